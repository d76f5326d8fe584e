// vmkeep addition (no upstream counterpart): NFC imports (ResourcePool.ImportVApp
// and its HttpNfcLease) that keep what is uploaded, as strict as vCenter's.
// Upstream's ServeNFC discarded upload bodies; the patched http_nfc_lease.go and
// resource_pool.go call the functions here.
//
//   - Device URLs (ImportVApp, patched resource_pool.go): key and importKey are
//     vCenter's "/<vm moref>/<controller type><bus>:<unit>" and
//     "/<vm name>/<controller type><bus>:<unit>" for disks (for instance
//     "/vm-57/VirtualLsiLogicController0:1"); other file-backed devices keep
//     upstream's "/<vm>/<kind>:<n>". With VCSIM_HOST_ENDPOINTS=1 each URL names
//     the endpoint of the host the VM was placed on ("https://127.0.0.1:<its
//     port>/nfc/<lease>/<file>", sslThumbprint = that host's SHA-1 thumbprint)
//     and only that host's listener serves it (the vCenter's /nfc answers 404);
//     without it, upstream's "https://*/nfc/<lease>/<file>" on the vCenter's
//     listener, no thumbprint. The disks ImportVApp creates are vcsim's own.
//   - Uploads to a disk's URL are POSTs with a Content-Length, as ovftool and
//     govc send a disk (PUT, theirs for other files, answers 405; a chunked body
//     without a length 411), and the body must be a streamOptimized VMDK: header magic KDMV, version 3, flags with compressed
//     grains (bit 16) and markers (bit 17), deflate, a capacity not larger than
//     the disk's. Each grain marker's zlib data is inflated and written at
//     lba*512 of the disk's "-flat.vmdk" (beside its descriptor), which is sized
//     to the disk's capacity and stays sparse (absent and all-zero grains are not
//     written); GT/GD/footer markers are skipped by their sector counts; the end-
//     of-stream marker ends it. The file is written under a temporary name and
//     renamed at the end: a body that is not such a VMDK answers 400 with the
//     reason and leaves the disk as it was. Uploads to other devices' files are
//     written as sent. GET serves the file (upstream).
//   - The lease as vCenter's: after HttpNfcLeaseComplete or HttpNfcLeaseAbort its
//     URLs answer 404 (an upload still running then is thrown away, 404);
//     HttpNfcLeaseAbort destroys the VM the import created (and its files).
//   - Counters: GET /vmkeep/counters has "nfc": {"bytes_received": all body bytes
//     read by NFC uploads, failed ones too; "attempts": uploads started;
//     "uploads": uploads written; "leases": {"<lease id>": {"bytes_received",
//     "attempts", "uploads"}}}.
//   - Failures on demand (for clients' retries), counting uploads started from
//     1 over the process: VCSIM_NFC_FAIL_ONCE=N drops the Nth upload,
//     VCSIM_NFC_FAIL_FROM=N the Nth and every later one: 64 KiB of the body
//     are read, then the connection is closed without an answer (a dropped
//     connection; 500 if the connection cannot be taken over).
package simulator

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// vmkeepNfcLease is a lease's vmkeep state (the field vmkeep of HttpNfcLease).
type vmkeepNfcLease struct {
	mu    sync.Mutex
	ended bool
	// host whose endpoint serves the URLs; zero: the vCenter's listener
	host  types.ManagedObjectReference
	disks map[string]int64 // file name -> the disk's capacity in bytes
}

type vmkeepNfcCount struct {
	BytesReceived int64 `json:"bytes_received"`
	Attempts      int64 `json:"attempts"`
	Uploads       int64 `json:"uploads"`
}

type vmkeepNfcCounts struct {
	vmkeepNfcCount
	Leases map[string]vmkeepNfcCount `json:"leases"`
}

var (
	vmkeepNfcFailOnce, _ = strconv.Atoi(os.Getenv("VCSIM_NFC_FAIL_ONCE"))
	vmkeepNfcFailFrom, _ = strconv.Atoi(os.Getenv("VCSIM_NFC_FAIL_FROM"))

	vmkeepNfcMu     sync.Mutex
	vmkeepNfcTotal  vmkeepNfcCount
	vmkeepNfcLeases = map[string]*vmkeepNfcCount{}
	vmkeepNfcStarts int64
)

// vmkeepNfcCountersNow is the "nfc" part of /vmkeep/counters.
func vmkeepNfcCountersNow() vmkeepNfcCounts {
	vmkeepNfcMu.Lock()
	defer vmkeepNfcMu.Unlock()
	out := vmkeepNfcCounts{vmkeepNfcTotal, map[string]vmkeepNfcCount{}}
	for id, c := range vmkeepNfcLeases {
		out.Leases[id] = *c
	}
	return out
}

func vmkeepNfcAdd(lease string, bytes, attempts, uploads int64) {
	vmkeepNfcMu.Lock()
	defer vmkeepNfcMu.Unlock()
	c := vmkeepNfcLeases[lease]
	if c == nil {
		c = &vmkeepNfcCount{}
		vmkeepNfcLeases[lease] = c
	}
	for _, x := range []*vmkeepNfcCount{c, &vmkeepNfcTotal} {
		x.BytesReceived += bytes
		x.Attempts += attempts
		x.Uploads += uploads
	}
}

// vmkeepNfcDeviceUrl is the device URL ImportVApp lists for device d (file
// name, upstream's "<kind>:<n>"), and records the disk's capacity.
func vmkeepNfcDeviceUrl(lease *HttpNfcLease, vm *VirtualMachine, devices object.VirtualDeviceList,
	d types.BaseVirtualDevice, name, kindN string) types.HttpNfcLeaseDeviceUrl {
	slot := kindN
	disk, isDisk := d.(*types.VirtualDisk)
	if isDisk {
		lease.vmkeep.disks[name] = getDiskSize(disk)
		c, ok := devices.FindByKey(disk.ControllerKey).(types.BaseVirtualController)
		if ok && disk.UnitNumber != nil {
			slot = fmt.Sprintf("%s%d:%d", reflect.TypeOf(c).Elem().Name(),
				c.GetVirtualController().BusNumber, *disk.UnitNumber)
		}
	}
	ref := lease.Reference()
	u := url.URL{Scheme: "https", Host: "*", Path: nfcPrefix + path.Join(ref.Value, name)}
	thumbprint := ""
	if vmkeepHostEndpoints && vm.Runtime.Host != nil {
		for _, ep := range vmkeepEndpoints {
			if ep.host == *vm.Runtime.Host {
				u.Host = "127.0.0.1:" + strconv.Itoa(ep.port)
				thumbprint = ep.thumbprint
				lease.vmkeep.host = ep.host
			}
		}
	}
	return types.HttpNfcLeaseDeviceUrl{
		Key:           fmt.Sprintf("/%s/%s", vm.Self.Value, slot),
		ImportKey:     fmt.Sprintf("/%s/%s", vm.Name, slot),
		Url:           u.String(),
		SslThumbprint: thumbprint,
		Disk:          types.NewBool(isDisk),
		TargetId:      name,
	}
}

// vmkeepEnd marks the lease ended: its URLs answer 404.
func (l *HttpNfcLease) vmkeepEnd() {
	l.vmkeep.mu.Lock()
	l.vmkeep.ended = true
	l.vmkeep.mu.Unlock()
}

// vmkeepNfcDestroy destroys the VM an aborted import created, as vCenter does.
func vmkeepNfcDestroy(ctx *Context, l *HttpNfcLease) {
	vm, ok := Map.Get(l.Info.Entity).(*VirtualMachine)
	if !ok {
		return
	}
	ctx.WithLock(vm, func() {
		vm.DestroyTask(ctx, &types.Destroy_Task{This: vm.Self})
	})
	log.Printf("nfc lease %s aborted: destroyed %s", l.Self.Value, vm.Self.Value)
}

// vmkeepServeNFC serves /nfc/ on the vCenter's listener (ep nil) or a host's.
func vmkeepServeNFC(ep *vmkeepHostEndpoint, w http.ResponseWriter, r *http.Request) {
	lease, name, file := nfcLookup(r)
	if lease == nil {
		http.NotFound(w, r)
		return
	}
	want := types.ManagedObjectReference{}
	if ep != nil {
		want = ep.host
	}
	if lease.vmkeep.host != want {
		log.Printf("nfc %s: lease %s is not served on this listener", r.URL.Path, lease.Self.Value)
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodPut, http.MethodPost:
		vmkeepNfcUpload(lease, name, file, w, r)
	case http.MethodGet:
		f, err := os.Open(file)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		_, _ = io.Copy(w, f)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// vmkeepCountingReader counts a body's bytes into the NFC counters.
type vmkeepCountingReader struct {
	r     io.Reader
	lease string
}

func (c *vmkeepCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		vmkeepNfcAdd(c.lease, int64(n), 0, 0)
	}
	return n, err
}

func vmkeepNfcUpload(lease *HttpNfcLease, name, file string, w http.ResponseWriter, r *http.Request) {
	id := lease.Self.Value
	vmkeepNfcAdd(id, 0, 1, 0)
	n := int(atomic.AddInt64(&vmkeepNfcStarts, 1))
	body := &vmkeepCountingReader{r: r.Body, lease: id}
	if n == vmkeepNfcFailOnce || (vmkeepNfcFailFrom > 0 && n >= vmkeepNfcFailFrom) {
		_, _ = io.CopyN(ioutil.Discard, body, 64<<10)
		log.Printf("nfc %s: upload %d dropped on purpose (VCSIM_NFC_FAIL_*)", r.URL.Path, n)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		http.Error(w, "vcsim: upload failed on purpose (VCSIM_NFC_FAIL_*)", http.StatusInternalServerError)
		return
	}
	capacity, isDisk := lease.vmkeep.disks[name]
	if isDisk && r.Method != http.MethodPost {
		_, _ = io.Copy(ioutil.Discard, body)
		http.Error(w, "vcsim: a disk is uploaded with POST (application/x-vnd.vmware-streamVmdk)", http.StatusMethodNotAllowed)
		return
	}
	if isDisk && r.ContentLength < 0 {
		_, _ = io.Copy(ioutil.Discard, body)
		http.Error(w, "vcsim: a disk upload needs a Content-Length", http.StatusLengthRequired)
		return
	}
	target := file
	if isDisk {
		target = vmkeepFlatName(file)
	}
	tmp := target + ".vmkeep-nfc"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0600)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if isDisk {
		if err = f.Truncate(capacity); err == nil {
			err = vmkeepWriteStreamVmdk(bufio.NewReaderSize(body, 1<<20), f, capacity)
		}
	} else {
		_, err = io.Copy(f, body)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	_, _ = io.Copy(ioutil.Discard, body) // the rest of a refused body, for the answer to be read
	var bad *vmkeepBadVmdk
	if err != nil {
		_ = os.Remove(tmp)
		log.Printf("nfc %s %s: %v", r.Method, file, err)
		if errors.As(err, &bad) {
			http.Error(w, err.Error(), http.StatusBadRequest)
		} else {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	lease.vmkeep.mu.Lock()
	defer lease.vmkeep.mu.Unlock()
	if lease.vmkeep.ended {
		_ = os.Remove(tmp)
		http.NotFound(w, r)
		return
	}
	if err := os.Rename(tmp, target); err != nil {
		_ = os.Remove(tmp)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	vmkeepNfcAdd(id, 0, 0, 1)
	log.Printf("nfc %s %s: written", r.Method, target)
	w.WriteHeader(http.StatusOK)
}

// vmkeepBadVmdk: the body is not a streamOptimized VMDK this disk can take.
type vmkeepBadVmdk struct{ msg string }

func (e *vmkeepBadVmdk) Error() string { return "not a streamOptimized VMDK for this disk: " + e.msg }

func vmkeepBad(format string, args ...interface{}) error {
	return &vmkeepBadVmdk{fmt.Sprintf(format, args...)}
}

// vmkeepReadFull reads len(p) bytes; a body that ends first is a bad VMDK,
// any other error (the connection) is returned as it is.
func vmkeepReadFull(r io.Reader, p []byte, what string) error {
	_, err := io.ReadFull(r, p)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return vmkeepBad("the body ends inside %s (no end-of-stream marker)", what)
	}
	return err
}

func vmkeepSkip(r io.Reader, n int64, what string) error {
	got, err := io.CopyN(ioutil.Discard, r, n)
	if got < n && (err == nil || err == io.EOF) {
		return vmkeepBad("the body ends inside %s (no end-of-stream marker)", what)
	}
	return err
}

// vmkeepWriteStreamVmdk decodes a streamOptimized VMDK from r and writes its
// grains into f (already sized to capacity bytes).
func vmkeepWriteStreamVmdk(r io.Reader, f *os.File, capacity int64) error {
	le := binary.LittleEndian
	var hdr [512]byte
	if err := vmkeepReadFull(r, hdr[:], "the header"); err != nil {
		return err
	}
	if string(hdr[0:4]) != "KDMV" {
		return vmkeepBad("the header's magic is %q, not \"KDMV\"", hdr[0:4])
	}
	if v := le.Uint32(hdr[4:]); v != 3 {
		return vmkeepBad("version %d, not 3", v)
	}
	flags := le.Uint32(hdr[8:])
	if flags&(1<<16) == 0 || flags&(1<<17) == 0 {
		return vmkeepBad("flags %#x lack compressed grains (bit 16) or markers (bit 17)", flags)
	}
	sectors := le.Uint64(hdr[12:])
	grain := le.Uint64(hdr[20:])
	overhead := le.Uint64(hdr[64:])
	if alg := le.Uint16(hdr[77:]); alg != 1 {
		return vmkeepBad("compression algorithm %d, not 1 (deflate)", alg)
	}
	if grain == 0 || grain > 2048 || grain&(grain-1) != 0 {
		return vmkeepBad("grain size of %d sectors", grain)
	}
	if sectors > uint64(capacity)/512+1 || int64(sectors)*512 > capacity+511 {
		return vmkeepBad("its capacity of %d sectors is larger than the disk's %d bytes", sectors, capacity)
	}
	if overhead < 1 || overhead > 4096 {
		return vmkeepBad("overhead of %d sectors", overhead)
	}
	if err := vmkeepSkip(r, int64(overhead-1)*512, "the descriptor"); err != nil {
		return err
	}
	limit := int64(sectors) * 512
	if limit > capacity {
		limit = capacity
	}
	grainBytes := int64(grain) * 512
	zero := make([]byte, grainBytes)
	for {
		var m [16]byte
		if err := vmkeepReadFull(r, m[:12], "a marker"); err != nil {
			return err
		}
		value := le.Uint64(m[0:])
		size := int64(le.Uint32(m[8:]))
		if size > 0 {
			if size > grainBytes+4096 {
				return vmkeepBad("a grain marker at LBA %d claims %d compressed bytes", value, size)
			}
			data := make([]byte, size)
			if err := vmkeepReadFull(r, data, "a grain"); err != nil {
				return err
			}
			if err := vmkeepSkip(r, (512-(12+size)%512)%512, "a grain's padding"); err != nil {
				return err
			}
			if value%grain != 0 {
				return vmkeepBad("a grain at LBA %d is not aligned to the grain size", value)
			}
			off := int64(value) * 512
			if off >= limit {
				return vmkeepBad("a grain at LBA %d lies past the disk's end", value)
			}
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err != nil {
				return vmkeepBad("the grain at LBA %d: %v", value, err)
			}
			out, err := ioutil.ReadAll(io.LimitReader(zr, grainBytes+1))
			if err != nil {
				return vmkeepBad("the grain at LBA %d: %v", value, err)
			}
			if int64(len(out)) > grainBytes {
				return vmkeepBad("the grain at LBA %d inflates to more than a grain", value)
			}
			if rest := limit - off; int64(len(out)) > rest {
				out = out[:rest]
			}
			if bytes.Equal(out, zero[:len(out)]) {
				continue // sparse: zeros are not written
			}
			if _, err := f.WriteAt(out, off); err != nil {
				return err
			}
			continue
		}
		if err := vmkeepReadFull(r, m[12:16], "a marker"); err != nil {
			return err
		}
		if err := vmkeepSkip(r, 512-16, "a marker"); err != nil {
			return err
		}
		switch kind := le.Uint32(m[12:]); kind {
		case 0: // end of stream
			return nil
		case 1, 2, 3: // grain table, grain directory, footer: skipped
			if value > 1<<24 {
				return vmkeepBad("a metadata marker claims %d sectors", value)
			}
			if err := vmkeepSkip(r, int64(value)*512, "metadata"); err != nil {
				return err
			}
		default:
			return vmkeepBad("a marker of unknown type %d", kind)
		}
	}
}
