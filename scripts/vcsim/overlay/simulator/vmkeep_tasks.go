// vmkeep addition (no upstream counterpart): tasks as slow and fallible as on
// vSphere, each part switched on by the environment (read once at start;
// unset means upstream's behaviour: a task has completed, successfully, when
// the method that started it answers). main.go's header lists the switches.
//
//   - VCSIM_TASK_DELAY=CreateSnapshot=2s,RemoveSnapshot=500ms,...: a task of
//     that kind answers "running" and stays so for that long (Go durations),
//     its info.progress rising in steps of 10; then it executes (the snapshot
//     appears, the disks change, ...) and completes. Its object (the VM, the
//     snapshot) is locked only while it executes, so reads go on meanwhile.
//   - VCSIM_TASK_FAIL=CreateSnapshot:1,ReconfigVM:2,...: the Nth task of that
//     kind (counted from vcsim's start, from 1; a kind may be named several
//     times) fails with a GenericVmConfigFault (reason "vcsim: injected
//     failure ...") without executing: no snapshot is made or removed, the
//     configuration is unchanged. With a delay, it fails at the delay's end.
//   - VCSIM_CONSOLIDATION_NEEDED=1: RemoveSnapshot_Task and
//     RemoveAllSnapshots_Task leave runtime.consolidationNeeded (and
//     summary.runtime.consolidationNeeded) true, as vSphere does when a
//     snapshot's disks could not be merged; VirtualMachine.ConsolidateVMDisks_Task
//     exists and sets it false. Unset, ConsolidateVMDisks_Task answers
//     MethodNotFound, as upstream does.
//
// Kinds (case-insensitive, "_Task" optional): CreateSnapshot, RemoveSnapshot,
// RemoveAllSnapshots, RevertToSnapshot, ReconfigVM, RelocateVM,
// ConsolidateVMDisks. Anything else stops vcsim at start. With either
// VCSIM_TASK_DELAY or VCSIM_TASK_FAIL set, tasks of these kinds carry
// vSphere's TaskInfo.name ("CreateSnapshot_Task", ...) instead of upstream's
// ("CreateSnapshot", "ReconfigVm"): pyVim's WaitForTask resolves the name of
// a running task as a method and fails on upstream's.
package simulator

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var vmkeepConsolidationNeeded = os.Getenv("VCSIM_CONSOLIDATION_NEEDED") == "1"

// vmkeepTaskKinds maps a kind as written in the switches (lower case) to the
// TaskInfo.name the simulator gives such tasks (lower case) and vSphere's.
var vmkeepTaskKinds = map[string]struct{ upstream, wsdl string }{
	"createsnapshot":     {"createsnapshot", "CreateSnapshot_Task"},
	"removesnapshot":     {"removesnapshot", "RemoveSnapshot_Task"},
	"removeallsnapshots": {"removeallsnapshots", "RemoveAllSnapshots_Task"},
	"reverttosnapshot":   {"reverttosnapshot", "RevertToSnapshot_Task"},
	"reconfigvm":         {"reconfigvm", "ReconfigVM_Task"},
	"relocatevm":         {"relocatevm", "RelocateVM_Task"},
	"consolidatevmdisks": {"consolidatevmdisks", "ConsolidateVMDisks_Task"},
}

// vmkeepTaskWsdl: vSphere's TaskInfo.name for a task the simulator names
// upstream (e.g. "CreateSnapshot"), or "" for other kinds.
func vmkeepTaskWsdl(upstream string) string {
	u := strings.ToLower(upstream)
	for _, k := range vmkeepTaskKinds {
		if k.upstream == u {
			return k.wsdl
		}
	}
	return ""
}

var (
	vmkeepTaskMu     sync.Mutex
	vmkeepTaskDelays = map[string]time.Duration{}
	vmkeepTaskFails  = map[string]map[int]bool{}
	vmkeepTaskCalls  = map[string]int{}
)

func vmkeepTaskKind(word string) (string, bool) {
	k := strings.ToLower(strings.TrimSpace(word))
	k = strings.TrimSuffix(k, "_task")
	kind, ok := vmkeepTaskKinds[k]
	return kind.upstream, ok
}

// vmkeepTasksSetup parses VCSIM_TASK_DELAY and VCSIM_TASK_FAIL.
func vmkeepTasksSetup(delays, fails string) error {
	kinds := "CreateSnapshot, RemoveSnapshot, RemoveAllSnapshots, RevertToSnapshot, ReconfigVM, RelocateVM, ConsolidateVMDisks"
	if delays != "" {
		for _, item := range strings.Split(delays, ",") {
			kv := strings.SplitN(item, "=", 2)
			kind, ok := vmkeepTaskKind(kv[0])
			if len(kv) != 2 || !ok {
				return fmt.Errorf("VCSIM_TASK_DELAY: %q is not KIND=DURATION with KIND one of %s", item, kinds)
			}
			d, err := time.ParseDuration(strings.TrimSpace(kv[1]))
			if err != nil || d < 0 {
				return fmt.Errorf("VCSIM_TASK_DELAY: %q: bad duration", item)
			}
			vmkeepTaskDelays[kind] = d
		}
	}
	if fails != "" {
		for _, item := range strings.Split(fails, ",") {
			kv := strings.SplitN(item, ":", 2)
			kind, ok := vmkeepTaskKind(kv[0])
			if len(kv) != 2 || !ok {
				return fmt.Errorf("VCSIM_TASK_FAIL: %q is not KIND:N with KIND one of %s", item, kinds)
			}
			n, err := strconv.Atoi(strings.TrimSpace(kv[1]))
			if err != nil || n < 1 {
				return fmt.Errorf("VCSIM_TASK_FAIL: %q: N must be a call number from 1", item)
			}
			if vmkeepTaskFails[kind] == nil {
				vmkeepTaskFails[kind] = map[int]bool{}
			}
			vmkeepTaskFails[kind][n] = true
		}
	}
	return nil
}

// vmkeepTaskPlan counts the task's call and says how long it is to run and
// whether it is to fail (the injected fault; nil: execute it).
func vmkeepTaskPlan(t *Task) (time.Duration, types.BaseMethodFault) {
	kind := strings.ToLower(t.Info.Name)
	vmkeepTaskMu.Lock()
	defer vmkeepTaskMu.Unlock()
	if len(vmkeepTaskDelays) == 0 && len(vmkeepTaskFails) == 0 {
		return 0, nil
	}
	// A running task's name must be a method pyVmomi knows (pyVim's
	// WaitForTask looks it up while the task runs): vSphere's, not upstream's.
	if wsdl := vmkeepTaskWsdl(kind); wsdl != "" {
		Map.Update(t, []types.PropertyChange{{Name: "info.name", Val: wsdl}})
	}
	vmkeepTaskCalls[kind]++
	n := vmkeepTaskCalls[kind]
	var fault types.BaseMethodFault
	if vmkeepTaskFails[kind][n] {
		fault = &types.GenericVmConfigFault{
			Reason: fmt.Sprintf("vcsim: injected failure of %s call %d (VCSIM_TASK_FAIL)", t.Info.Name, n),
		}
	}
	return vmkeepTaskDelays[kind], fault
}

// vmkeepFaultMessage is TaskInfo.error.localizedMessage: an injected
// failure's reason, else upstream's Go type name.
func vmkeepFaultMessage(err types.BaseMethodFault) string {
	if f, ok := err.(*types.GenericVmConfigFault); ok && strings.HasPrefix(f.Reason, "vcsim: injected") {
		return f.Reason
	}
	return fmt.Sprintf("%T", err)
}

// vmkeepRunLater runs a delayed task: progress for delay, then execution
// under its object's lock (as a method call would hold it), then completion.
func (t *Task) vmkeepRunLater(delay time.Duration, injected types.BaseMethodFault) {
	step := delay / 10
	for p := 10; p < 100; p += 10 {
		time.Sleep(step)
		progress := int32(p)
		Map.WithLock(t, func() {
			Map.Update(t, []types.PropertyChange{{Name: "info.progress", Val: progress}})
		})
	}
	time.Sleep(delay - 9*step)

	var res types.AnyType
	var err types.BaseMethodFault
	if injected != nil {
		err = injected
	} else {
		func() {
			defer func() {
				// e.g. the snapshot was removed by another task meanwhile:
				// a fault, not a crash of the whole simulator.
				if r := recover(); r != nil {
					res = nil
					err = &types.SystemError{Reason: fmt.Sprintf("vcsim: %s failed: %v", t.Info.Name, r)}
				}
			}()
			Map.WithLock(t.obj, func() { res, err = t.Execute(t) })
		}()
	}
	Map.WithLock(t, func() { t.complete(res, err) })
}

// vmkeepConsolidationChanges: what a snapshot removal adds to the VM's
// property changes with VCSIM_CONSOLIDATION_NEEDED=1.
func vmkeepConsolidationChanges(vm *VirtualMachine) []types.PropertyChange {
	if !vmkeepConsolidationNeeded {
		return nil
	}
	return vmkeepConsolidation(vm, true)
}

// vmkeepConsolidation sets runtime.consolidationNeeded (and the summary's).
// Whole runtime structs are assigned: Registry.Update cannot assign a *bool
// below a struct path ("runtime.consolidationNeeded").
func vmkeepConsolidation(vm *VirtualMachine, needed bool) []types.PropertyChange {
	rt, srt := vm.Runtime, vm.Summary.Runtime
	rt.ConsolidationNeeded = types.NewBool(needed)
	srt.ConsolidationNeeded = types.NewBool(needed)
	return []types.PropertyChange{
		{Name: "runtime", Val: rt},
		{Name: "summary.runtime", Val: srt},
	}
}

// ConsolidateVMDisksTask (vmkeep) clears runtime.consolidationNeeded; only
// with VCSIM_CONSOLIDATION_NEEDED=1 (else MethodNotFound, as upstream).
func (vm *VirtualMachine) ConsolidateVMDisksTask(ctx *Context, req *types.ConsolidateVMDisks_Task) soap.HasFault {
	body := &methods.ConsolidateVMDisks_TaskBody{}
	if !vmkeepConsolidationNeeded {
		msg := fmt.Sprintf("%s does not implement: ConsolidateVMDisks_Task", req.This)
		body.Fault_ = Fault(msg, &types.MethodNotFound{Receiver: req.This, Method: "ConsolidateVMDisks_Task"})
		return body
	}
	task := CreateTask(vm, "consolidateVMDisks", func(t *Task) (types.AnyType, types.BaseMethodFault) {
		Map.Update(vm, vmkeepConsolidation(vm, false))
		return nil, nil
	})
	body.Res = &types.ConsolidateVMDisks_TaskResponse{Returnval: task.Run()}
	return body
}
