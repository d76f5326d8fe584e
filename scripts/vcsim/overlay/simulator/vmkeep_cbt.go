// vmkeep addition (no upstream counterpart): Changed Block Tracking and
// snapshot disk freezing for the simulator.
//
// Snapshot freezing. vcsim makes no delta disks, so a snapshot's disks would
// otherwise name the VM's live files and see later writes. At CreateSnapshot
// (patched virtual_machine.go) each flat-backed disk's descriptor and flat file
// are copied to "<disk>-snap<ID>.vmdk" / "<disk>-snap<ID>-flat.vmdk" in the same
// folder (ID = the snapshot tree id), and the snapshot's config (a deep copy of
// the device list) points at the copy; the VM keeps writing its current file.
// RemoveSnapshot (patched snapshot.go) deletes the copies (with removeChildren,
// also those of the descendants).
//
// Turning CBT off (ReconfigVM with changeTrackingEnabled=false) forgets the
// VM's change IDs, as vSphere deletes the .ctk files.
//
// Change IDs. When a VM with config.changeTrackingEnabled is snapshotted, each
// disk gets a new change ID "52 xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx/N"
// (stable 16-byte id per VM disk, N counting up), stored in the snapshot's
// disk backing (backing.changeId), and the frozen file's per-64 KiB SHA-256
// digests (up to the disk capacity; bytes past the file's end are zero) are
// kept in a package-level map keyed by change ID. Change IDs stay valid after
// their snapshot is removed (as on vSphere).
//
// QueryChangedDiskAreas(snapshot, deviceKey, startOffset, changeId):
//   - CBT off on the VM -> NotSupported
//   - snapshot not one of this VM's -> InvalidArgument(invalidProperty=snapshot)
//   - no such disk -> InvalidArgument(deviceKey)
//   - startOffset < 0 or >= capacity -> InvalidArgument(startOffset)
//   - changeId neither "*" nor recorded for this VM disk -> InvalidArgument(changeId)
//   - "*": the non-zero 64 KiB areas of the snapshot's disk; otherwise the
//     areas whose content differs between the changeId's state and the
//     snapshot's state. Extents are 64 KiB aligned (the first is clipped to
//     startOffset, the last to the capacity) and adjacent areas are merged.
//   - snapshot unset: compared against the VM's live disk file.
//
// A CBT bug on demand: with VCSIM_CBT_HIDE_EVERY=N (N > 0), a query with an
// earlier changeId leaves out every Nth changed 64 KiB area of each reply (1:
// all of them), as vSphere's CBT did in known bugs (e.g. after a disk grew past
// 128 GB). Queries with "*" are not affected. Clients cannot tell from the
// reply; vmkeep's CBT sanity sampling is what finds it.
//
// Paging: with VCSIM_CBT_MAX_EXTENTS=N (N > 0) in vcsim's environment, a reply
// holds at most N extents and its Length stops where the (N+1)th extent would
// start, so Length < capacity - startOffset and clients must continue at
// startOffset+Length (as with vSphere's partial replies). Unset or 0: a reply
// always covers the rest of the disk.
package simulator

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const vmkeepCBTBlock = 64 * 1024

type vmkeepCBTState struct {
	vm        types.ManagedObjectReference
	deviceKey int32
	capacity  int64
	digests   [][sha256.Size]byte
}

var vmkeepCBT = struct {
	sync.Mutex
	states  map[string]*vmkeepCBTState                // changeId -> content state
	ids     map[string]string                         // "vm/deviceKey" -> 16-byte id text
	seq     map[string]int                            // "vm/deviceKey" -> last N
	frozen  map[types.ManagedObjectReference][]string // snapshot -> frozen files
	zeroSum [sha256.Size]byte
}{
	states:  map[string]*vmkeepCBTState{},
	ids:     map[string]string{},
	seq:     map[string]int{},
	frozen:  map[types.ManagedObjectReference][]string{},
	zeroSum: sha256.Sum256(make([]byte, vmkeepCBTBlock)),
}

// vmkeepDiskFile returns the local path of a datastore path "[ds] dir/x.vmdk".
func vmkeepDiskFile(vm *VirtualMachine, name string) (string, types.BaseMethodFault) {
	p, fault := parseDatastorePath(name)
	if fault != nil {
		return "", fault
	}
	ds := vm.findDatastore(p.Datastore)
	if ds == nil {
		return "", &types.InvalidDatastorePath{DatastorePath: name}
	}
	return path.Join(ds.Info.GetDatastoreInfo().Url, p.Path), nil
}

func vmkeepFlatName(vmdk string) string {
	return strings.TrimSuffix(vmdk, ".vmdk") + "-flat.vmdk"
}

// vmkeepCopyFile copies src to dst; a missing src gives an empty dst.
func vmkeepCopyFile(src, dst string) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err == nil {
		_, err = io.Copy(out, in)
		_ = in.Close()
	} else if os.IsNotExist(err) {
		err = nil
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}

// vmkeepDigests hashes the flat file in 64 KiB blocks up to capacity.
func vmkeepDigests(flat string, capacity int64) ([][sha256.Size]byte, error) {
	n := (capacity + vmkeepCBTBlock - 1) / vmkeepCBTBlock
	sums := make([][sha256.Size]byte, n)
	f, err := os.Open(flat)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if f != nil {
		defer f.Close()
	}
	buf := make([]byte, vmkeepCBTBlock)
	eof := f == nil
	for i := range sums {
		for j := range buf {
			buf[j] = 0
		}
		if !eof {
			if _, err := io.ReadFull(f, buf); err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					return nil, err
				}
				eof = true
			}
		}
		if last := capacity - int64(i)*vmkeepCBTBlock; last < vmkeepCBTBlock {
			for j := last; j < vmkeepCBTBlock; j++ {
				buf[j] = 0 // ignore bytes past the capacity
			}
		}
		sums[i] = sha256.Sum256(buf)
	}
	return sums, nil
}

func vmkeepNewChangeID(key string) string {
	id, ok := vmkeepCBT.ids[key]
	if !ok {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		b[0] = 0x52
		parts := make([]string, 16)
		for i, c := range b {
			parts[i] = fmt.Sprintf("%02x", c)
		}
		id = strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
		vmkeepCBT.ids[key] = id
	}
	vmkeepCBT.seq[key]++
	return id + "/" + strconv.Itoa(vmkeepCBT.seq[key])
}

// vmkeepCBTReset forgets every change ID of the VM, as vSphere does when CBT
// is turned off (its .ctk files are deleted): a later query with one of them
// fails with InvalidArgument(changeId), and turning CBT on again starts new
// IDs. A restore that rewrites a disk behind CBT's back relies on this.
func vmkeepCBTReset(vm types.ManagedObjectReference) {
	vmkeepCBT.Lock()
	defer vmkeepCBT.Unlock()
	for id, st := range vmkeepCBT.states {
		if st.vm == vm {
			delete(vmkeepCBT.states, id)
		}
	}
	prefix := vm.Value + "/"
	for key := range vmkeepCBT.ids {
		if strings.HasPrefix(key, prefix) {
			delete(vmkeepCBT.ids, key)
			delete(vmkeepCBT.seq, key)
		}
	}
}

func vmkeepCBTEnabled(vm *VirtualMachine) bool {
	return vm.Config != nil && vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
}

// vmkeepFreezeSnapshotDisks is called by CreateSnapshotTask after
// snapshot.Config was (shallow) copied from vm.Config.
func vmkeepFreezeSnapshotDisks(vm *VirtualMachine, snapshot *VirtualMachineSnapshot, id int32) types.BaseMethodFault {
	cbt := vmkeepCBTEnabled(vm)
	devices := make([]types.BaseVirtualDevice, len(snapshot.Config.Hardware.Device))
	copy(devices, snapshot.Config.Hardware.Device)

	vmkeepCBT.Lock()
	defer vmkeepCBT.Unlock()

	var made []string
	fail := func(err error, file string) types.BaseMethodFault {
		for _, f := range made {
			_ = os.Remove(f)
		}
		return &types.CannotCreateFile{FileFault: types.FileFault{File: file + ": " + err.Error()}}
	}
	for i, d := range devices {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok || backing.FileName == "" {
			continue
		}
		src, fault := vmkeepDiskFile(vm, backing.FileName)
		if fault != nil {
			return fault
		}
		suffix := fmt.Sprintf("-snap%d.vmdk", id)
		dst := strings.TrimSuffix(src, ".vmdk") + suffix
		for _, pair := range [][2]string{{src, dst}, {vmkeepFlatName(src), vmkeepFlatName(dst)}} {
			if err := vmkeepCopyFile(pair[0], pair[1]); err != nil {
				return fail(err, pair[1])
			}
			made = append(made, pair[1])
		}

		nb := *backing
		nb.FileName = strings.TrimSuffix(backing.FileName, ".vmdk") + suffix
		if cbt {
			capacity := getDiskSize(disk)
			sums, err := vmkeepDigests(vmkeepFlatName(dst), capacity)
			if err != nil {
				return fail(err, vmkeepFlatName(dst))
			}
			key := vm.Self.Value + "/" + strconv.Itoa(int(disk.Key))
			nb.ChangeId = vmkeepNewChangeID(key)
			vmkeepCBT.states[nb.ChangeId] = &vmkeepCBTState{
				vm: vm.Self, deviceKey: disk.Key, capacity: capacity, digests: sums,
			}
		} else {
			nb.ChangeId = ""
		}
		nd := *disk
		nd.Backing = &nb
		devices[i] = &nd
	}
	snapshot.Config.Hardware.Device = devices
	vmkeepCBT.frozen[snapshot.Self] = made
	return nil
}

// vmkeepRemoveFrozenDisks is called by removeSnapshotFiles.
func vmkeepRemoveFrozenDisks(v *VirtualMachineSnapshot) {
	vmkeepCBT.Lock()
	defer vmkeepCBT.Unlock()
	for _, f := range vmkeepCBT.frozen[v.Self] {
		_ = os.Remove(f)
	}
	delete(vmkeepCBT.frozen, v.Self)
}

// vmkeepRemoveChildFrozenDisks removes the frozen copies of v's descendants
// (RemoveSnapshot with removeChildren).
func vmkeepRemoveChildFrozenDisks(v *VirtualMachineSnapshot) {
	for _, ref := range v.ChildSnapshot {
		if child, ok := Map.Get(ref).(*VirtualMachineSnapshot); ok {
			vmkeepRemoveChildFrozenDisks(child)
			vmkeepRemoveFrozenDisks(child)
		}
	}
}

func vmkeepFindDisk(devices []types.BaseVirtualDevice, key int32) *types.VirtualDisk {
	for _, d := range devices {
		if disk, ok := d.(*types.VirtualDisk); ok && disk.Key == key {
			return disk
		}
	}
	return nil
}

func vmkeepEnvCount(name string) int {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func vmkeepCBTMaxExtents() int { return vmkeepEnvCount("VCSIM_CBT_MAX_EXTENTS") }

func (vm *VirtualMachine) QueryChangedDiskAreas(ctx *Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	body := &methods.QueryChangedDiskAreasBody{}
	res, fault := vm.vmkeepQueryChangedDiskAreas(req)
	if fault != nil {
		body.Fault_ = Fault("", fault)
		return body
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: *res}
	return body
}

func vmkeepInvalid(prop string) types.BaseMethodFault {
	return &types.InvalidArgument{InvalidProperty: prop}
}

func (vm *VirtualMachine) vmkeepQueryChangedDiskAreas(req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, types.BaseMethodFault) {
	if !vmkeepCBTEnabled(vm) {
		return nil, &types.NotSupported{}
	}

	devices := vm.Config.Hardware.Device
	if req.Snapshot != nil {
		snap, ok := Map.Get(*req.Snapshot).(*VirtualMachineSnapshot)
		if !ok || snap.Vm != vm.Self {
			return nil, vmkeepInvalid("snapshot")
		}
		devices = snap.Config.Hardware.Device
	}
	disk := vmkeepFindDisk(devices, req.DeviceKey)
	if disk == nil {
		return nil, vmkeepInvalid("deviceKey")
	}
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return nil, vmkeepInvalid("deviceKey")
	}
	capacity := getDiskSize(disk)
	if req.StartOffset < 0 || req.StartOffset >= capacity {
		return nil, vmkeepInvalid("startOffset")
	}

	vmkeepCBT.Lock()
	var base *vmkeepCBTState
	if req.ChangeId != "*" {
		base = vmkeepCBT.states[req.ChangeId]
	}
	cur := vmkeepCBT.states[backing.ChangeId]
	zero := vmkeepCBT.zeroSum
	vmkeepCBT.Unlock()

	if req.ChangeId != "*" && (base == nil || base.vm != vm.Self || base.deviceKey != req.DeviceKey) {
		return nil, vmkeepInvalid("changeId")
	}

	var sums [][sha256.Size]byte
	if cur != nil && cur.capacity == capacity && backing.ChangeId != "" {
		sums = cur.digests
	} else { // live disk (snapshot unset) or a snapshot taken with CBT off
		file, fault := vmkeepDiskFile(vm, backing.FileName)
		if fault != nil {
			return nil, fault
		}
		var err error
		sums, err = vmkeepDigests(vmkeepFlatName(file), capacity)
		if err != nil {
			return nil, &types.FileFault{File: err.Error()}
		}
	}

	changed := func(i int) bool {
		if base == nil {
			return !bytes.Equal(sums[i][:], zero[:])
		}
		if i >= len(base.digests) { // disk grown since changeId
			return true
		}
		return !bytes.Equal(sums[i][:], base.digests[i][:])
	}

	max := vmkeepCBTMaxExtents()
	hide := vmkeepEnvCount("VCSIM_CBT_HIDE_EVERY")
	seen := 0
	info := &types.DiskChangeInfo{StartOffset: req.StartOffset, Length: capacity - req.StartOffset}
	for i := int(req.StartOffset / vmkeepCBTBlock); i < len(sums); i++ {
		if !changed(i) {
			continue
		}
		seen++
		if hide > 0 && base != nil && seen%hide == 0 {
			continue // a CBT bug: this changed area goes unreported
		}
		start := int64(i) * vmkeepCBTBlock
		if start < req.StartOffset {
			start = req.StartOffset
		}
		end := (int64(i) + 1) * vmkeepCBTBlock
		if end > capacity {
			end = capacity
		}
		n := len(info.ChangedArea)
		if n > 0 && info.ChangedArea[n-1].Start+info.ChangedArea[n-1].Length == start {
			info.ChangedArea[n-1].Length += end - start
			continue
		}
		if max > 0 && n == max {
			info.Length = start - req.StartOffset
			break
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: start, Length: end - start})
	}
	return info, nil
}
