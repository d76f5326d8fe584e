/*
Copyright (c) 2017 VMware, Inc. All Rights Reserved.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package simulator

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const vTaskSuffix = "_Task" // vmomi suffix
const sTaskSuffix = "Task"  // simulator suffix (avoiding golint warning)

type Task struct {
	mo.Task

	Execute func(*Task) (types.AnyType, types.BaseMethodFault)

	// vmkeep: the object the task runs on, locked while a delayed task
	// executes (see vmkeep_tasks.go).
	obj mo.Reference
}

func NewTask(runner TaskRunner) *Task {
	ref := runner.Reference()
	name := reflect.TypeOf(runner).Elem().Name()
	name = strings.Replace(name, "VM", "Vm", 1) // "VM" for the type to make go-lint happy, but "Vm" for the vmodl ID
	return CreateTask(ref, name, runner.Run)
}

func CreateTask(e mo.Reference, name string, run func(*Task) (types.AnyType, types.BaseMethodFault)) *Task {
	ref := e.Reference()
	id := name

	if strings.HasSuffix(id, sTaskSuffix) {
		id = id[:len(id)-len(sTaskSuffix)]
		name = id + vTaskSuffix
	}

	task := &Task{
		Execute: run,
		obj:     e,
	}

	task.Self = Map.newReference(task)
	task.Info.Key = task.Self.Value
	task.Info.Task = task.Self
	task.Info.Name = ucFirst(name)
	task.Info.DescriptionId = fmt.Sprintf("%s.%s", ref.Type, id)
	// vmkeep patch (bug 2): TaskInfo.entity is a ManagedEntity reference.
	// Upstream stored the object running the task even when it is not a
	// ManagedEntity (VirtualMachineSnapshot, VirtualDiskManager, ...), which
	// clients that type-check the reference (pyvmomi) reject.
	if entity, ok := taskEntity(e, ref); ok {
		task.Info.Entity = &entity
		task.Info.EntityName = entity.Value
	}
	task.Info.Reason = &types.TaskReasonUser{UserName: "vcsim"} // TODO: Context.Session.User
	task.Info.QueueTime = time.Now()
	task.Info.State = types.TaskInfoStateQueued

	Map.Put(task)

	return task
}

// taskEntity returns the ManagedEntity a task created for e is about: e itself
// when it is a ManagedEntity, the VM for a VirtualMachineSnapshot (as vCenter
// reports it), and false otherwise (e.g. VirtualDiskManager).
func taskEntity(e mo.Reference, ref types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
	obj := e
	if _, isRef := e.(types.ManagedObjectReference); isRef {
		// callers may pass a bare reference (e.g. powerOn): resolve it
		obj = Map.Get(ref)
	}
	switch o := obj.(type) {
	case nil:
		return ref, false
	case *VirtualMachineSnapshot:
		return o.Vm, true
	case mo.Entity:
		return ref, true
	}
	return ref, false
}

type TaskRunner interface {
	mo.Reference

	Run(*Task) (types.AnyType, types.BaseMethodFault)
}

// Run starts the task. vmkeep: a task named in VCSIM_TASK_DELAY stays
// "running" (with progress) for that long and then executes in the
// background; one picked by VCSIM_TASK_FAIL fails with an injected fault
// instead of executing (see vmkeep_tasks.go). Otherwise, as upstream, the
// task has completed when Run returns.
func (t *Task) Run() types.ManagedObjectReference {
	now := time.Now()

	Map.Update(t, []types.PropertyChange{
		{Name: "info.startTime", Val: now},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
	})

	delay, injected := vmkeepTaskPlan(t)
	if delay > 0 {
		go t.vmkeepRunLater(delay, injected)
		return t.Self
	}

	var res types.AnyType
	var err types.BaseMethodFault
	if injected != nil {
		err = injected
	} else {
		res, err = t.Execute(t)
	}
	t.complete(res, err)

	return t.Self
}

// complete records the task's outcome (upstream's end of Run).
func (t *Task) complete(res types.AnyType, err types.BaseMethodFault) {
	state := types.TaskInfoStateSuccess
	var fault interface{}
	if err != nil {
		state = types.TaskInfoStateError
		fault = types.LocalizedMethodFault{
			Fault:            err,
			LocalizedMessage: vmkeepFaultMessage(err),
		}
	}

	now := time.Now()

	Map.Update(t, []types.PropertyChange{
		{Name: "info.completeTime", Val: now},
		{Name: "info.state", Val: state},
		{Name: "info.result", Val: res},
		{Name: "info.error", Val: fault},
	})
}
