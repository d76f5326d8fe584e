// vmkeep addition (no upstream counterpart): inventory details as on vSphere,
// each switched on by the environment (see also vmkeep_strict.go).
//
//   - VCSIM_DS_TYPES=LocalDS_0=VMFS,LocalDS_1=NFS,...: summary.type of the
//     named datastores (VMFS, NFS, NFS41, CIFS, vsan, VVOL, vfat, PMEM, OTHER).
//     Only the type: info stays a LocalDatastoreInfo (no vmfs/nas details),
//     and an unknown name or type stops vcsim at start.
//   - VCSIM_DS_URL=vmfs: info.url and summary.url read through the
//     PropertyCollector are "ds:///vmfs/volumes/<id>/" (id stable per
//     datastore name, shaped by its type: VMFS "8-8-4-12" hex, NFS "8-8",
//     vsan "vsan:16-16", VVOL "vvol:16-16"), as on vSphere. The simulator keeps
//     using the local folder internally. Unset: the local folder (what
//     vmkeep's "direct" transport relies on).
//   - VCSIM_ENCRYPTED_VMS=DC0_H0_VM0,...: those VMs get config.keyId and each
//     of their disks (also disks added later) backing.keyId (provider
//     "vmkeep-kms", key id stable per VM).
package simulator

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

var vmkeepDsURLVmfs = os.Getenv("VCSIM_DS_URL") == "vmfs"

var vmkeepDatastoreTypes = map[string]bool{
	"VMFS": true, "NFS": true, "NFS41": true, "CIFS": true, "vsan": true,
	"VVOL": true, "vfat": true, "PMEM": true, "OTHER": true,
}

func vmkeepSetDatastoreTypes(spec string) error {
	if spec == "" {
		return nil
	}
	want := map[string]string{}
	for _, item := range strings.Split(spec, ",") {
		kv := strings.SplitN(strings.TrimSpace(item), "=", 2)
		if len(kv) != 2 || !vmkeepDatastoreTypes[kv[1]] {
			return fmt.Errorf("VCSIM_DS_TYPES: %q is not NAME=TYPE with TYPE one of VMFS, NFS, NFS41, CIFS, vsan, VVOL, vfat, PMEM, OTHER", item)
		}
		want[kv[0]] = kv[1]
	}
	for _, e := range Map.All("Datastore") {
		ds := e.(*Datastore)
		if t, ok := want[ds.Name]; ok {
			ds.Summary.Type = t
			delete(want, ds.Name)
		}
	}
	for name := range want {
		return fmt.Errorf("VCSIM_DS_TYPES: no datastore %q", name)
	}
	return nil
}

// vmkeepDatastoreURL is the "ds:///vmfs/volumes/<id>/" URL of a datastore.
func vmkeepDatastoreURL(name, kind string) string {
	h := sha256.Sum256([]byte("vmkeep-datastore:" + name))
	x := hex.EncodeToString(h[:])
	var id string
	switch kind {
	case "NFS", "NFS41", "CIFS":
		id = x[0:8] + "-" + x[8:16]
	case "vsan":
		id = "vsan:" + x[0:16] + "-" + x[16:32]
	case "VVOL":
		id = "vvol:" + x[0:16] + "-" + x[16:32]
	default:
		id = x[0:8] + "-" + x[8:16] + "-" + x[16:20] + "-" + x[20:32]
	}
	return "ds:///vmfs/volumes/" + id + "/"
}

// Get is what the PropertyCollector reads (see getObject): with
// VCSIM_DS_URL=vmfs a copy with vSphere's URLs, else the datastore itself.
func (ds *Datastore) Get() mo.Reference {
	if !vmkeepDsURLVmfs {
		return &ds.Datastore
	}
	c := ds.Datastore
	u := vmkeepDatastoreURL(ds.Name, ds.Summary.Type)
	c.Summary.Url = u
	if ds.Info != nil {
		v := reflect.ValueOf(ds.Info).Elem()
		n := reflect.New(v.Type())
		n.Elem().Set(v)
		info := n.Interface().(types.BaseDatastoreInfo)
		info.GetDatastoreInfo().Url = u
		c.Info = info
	}
	return &c
}

var (
	vmkeepEncryptedMu  sync.Mutex
	vmkeepEncryptedVMs = map[types.ManagedObjectReference]types.CryptoKeyId{}
)

func vmkeepMarkEncrypted(spec string) error {
	if spec == "" {
		return nil
	}
	names := map[string]bool{}
	for _, n := range strings.Split(spec, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names[n] = true
		}
	}
	for _, e := range Map.All("VirtualMachine") {
		vm := e.(*VirtualMachine)
		if !names[vm.Name] {
			continue
		}
		delete(names, vm.Name)
		h := sha256.Sum256([]byte("vmkeep-key:" + vm.Name))
		key := types.CryptoKeyId{
			KeyId:      fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16]),
			ProviderId: &types.KeyProviderId{Id: "vmkeep-kms"},
		}
		vmkeepEncryptedMu.Lock()
		vmkeepEncryptedVMs[vm.Self] = key
		vmkeepEncryptedMu.Unlock()
		Map.WithLock(vm, func() {
			k := key
			vm.Config.KeyId = &k
			for _, d := range vm.Config.Hardware.Device {
				vmkeepEncryptDisk(vm, d)
			}
		})
	}
	for name := range names {
		return fmt.Errorf("VCSIM_ENCRYPTED_VMS: no VM %q", name)
	}
	return nil
}

// vmkeepEncryptDisk sets backing.keyId on a disk of an encrypted VM (also
// called by the patched virtual_machine.go for disks added later).
func vmkeepEncryptDisk(vm *VirtualMachine, d types.BaseVirtualDevice) {
	vmkeepEncryptedMu.Lock()
	key, ok := vmkeepEncryptedVMs[vm.Self]
	vmkeepEncryptedMu.Unlock()
	disk, isDisk := d.(*types.VirtualDisk)
	if !ok || !isDisk {
		return
	}
	switch b := disk.Backing.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		k := key
		b.KeyId = &k
	case *types.VirtualDiskSeSparseBackingInfo:
		k := key
		b.KeyId = &k
	case *types.VirtualDiskSparseVer2BackingInfo:
		k := key
		b.KeyId = &k
	}
}
