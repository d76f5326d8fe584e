// vmkeep addition (no upstream counterpart): what hot-add needs from ESXi and
// the appliance's guest OS, for vmkeep's hot-add transport.
//
// Disk UUIDs. ESXi gives every virtual disk a backing.uuid
// ("6000C29x-xxxx-xxxx-xxxx-xxxxxxxxxxxx"), also a disk added to a VM as an
// existing file; the guest sees it as the disk's SCSI WWN (with
// disk.EnableUUID). vcsim sets none: a FlatVer2 disk added without one
// (patched virtual_machine.go, configureDevice) gets a random one of that shape.
//
// Playing udev: with VCSIM_BY_ID_DIR=/path in vcsim's environment, a disk
// added to a VM as an existing file (ReconfigVM, device add, no
// fileOperation) makes a symlink "<dir>/wwn-0x<uuid hex, lower case, no
// dashes>" to that disk's flat file (the descriptor's "-flat.vmdk", where vcsim
// keeps the bytes), as udev would in the guest the disk is attached to; the
// link is removed when the disk is removed from the VM (removeDevice). vmkeep's
// tests point the appliance's by-id lookup at that folder. Unset: no links.
package simulator

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

var vmkeepByIDDir = os.Getenv("VCSIM_BY_ID_DIR")

func vmkeepDiskUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := "6000C29" + strings.ToUpper(fmt.Sprintf("%x", b))[7:]
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func vmkeepByIDLink(uuid string) string {
	return filepath.Join(vmkeepByIDDir, "wwn-0x"+strings.ToLower(strings.ReplaceAll(uuid, "-", "")))
}

// vmkeepHotaddAttached gives the added disk a backing.uuid if it has none and,
// for an existing file with VCSIM_BY_ID_DIR set, links it by id.
func vmkeepHotaddAttached(vm *VirtualMachine, disk *types.VirtualDisk, op types.VirtualDeviceConfigSpecFileOperation) {
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok {
		return
	}
	if b.Uuid == "" {
		b.Uuid = vmkeepDiskUUID()
	}
	if vmkeepByIDDir == "" || op != "" {
		return
	}
	dc := Map.getEntityDatacenter(vm)
	if dc == nil {
		return
	}
	file, fault := Map.FileManager().resolve(&dc.Self, b.FileName)
	if fault != nil {
		return
	}
	flat := vdmNames(file)[0]
	link := vmkeepByIDLink(b.Uuid)
	_ = os.Remove(link)
	if err := os.Symlink(flat, link); err != nil {
		vm.logPrintf("VCSIM_BY_ID_DIR: %s", err)
	}
}

// vmkeepHotaddDetached removes the by-id link of a disk removed from a VM.
func vmkeepHotaddDetached(d types.BaseVirtualDevice) {
	disk, ok := d.(*types.VirtualDisk)
	if !ok || vmkeepByIDDir == "" {
		return
	}
	if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && b.Uuid != "" {
		_ = os.Remove(vmkeepByIDLink(b.Uuid))
	}
}
