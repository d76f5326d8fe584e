// vmkeep addition (no upstream counterpart): a stricter data path, each
// strictness switchable (environment variables, read once at start; unset
// means upstream's lenient behaviour). main.go's header lists the switches.
//
// /folder (ServeDatastore in the patched simulator.go calls vmkeepServeFolder):
//   - VCSIM_FOLDER_AUTH=1: the vCenter's /folder needs the cookie
//     vmware_soap_session of a logged-in session or a service ticket; else 401.
//   - Tickets: SessionManager.AcquireGenericServiceTicket (patched
//     session_manager.go) remembers each ticket with its spec's URL and method.
//     A request presenting cookie vmware_cgi_ticket=<id> is let in when the
//     ticket's method is the request's (httpGet = GET, httpPut = PUT, ...) and
//     its URL names the listener's port (443 for https when it names none) and
//     the same path and query; the ticket is then used up (single use). A
//     ticket presented elsewhere is refused and stays unused.
//   - VCSIM_VC_FOLDER_REFUSE=1: the vCenter's /folder answers 403 to every
//     request (only the hosts' endpoints serve data).
//   - VCSIM_HOST_ENDPOINTS=1: every HostSystem gets a listener of its own
//     (https on 127.0.0.1, a port of its own, a self-signed certificate for its
//     name and 127.0.0.1). It serves /folder for the datastores the host mounts
//     (dsName required; dcPath absent or "ha-datacenter", as on ESXi) and
//     accepts tickets only (the vCenter's session cookie gets 401). Where a
//     client finds it: summary.config.port = the port,
//     summary.config.sslThumbprint = SHA-1 of the certificate ("AA:BB:..."),
//     the address = the management vmknic's IP (config.network.vnic[0] and
//     config.virtualNicManagerInfo.netConfig "management" vmk0, what govmomi's
//     HostSystem.ManagementIPs reads): 127.0.0.1 already in the model. Host
//     names (DC0_H0, ...) stay as they are. config.certificate is NOT set:
//     govmomi 0.24.2 encodes a []byte as one text element, which pyVmomi
//     cannot read as xsd:byte[] (every read of host.config would fail).
//   - Counters: GET /vmkeep/counters on the vCenter's listener answers JSON
//     {"vcenter": {"requests": n, "served": n},
//     "hosts": {"DC0_H0": {"address", "port", "thumbprint", "requests", "served"}}}
//     (requests: every /folder request; served: those handed to the file
//     server after the checks), and "nfc" (vmkeep_nfc.go: NFC upload bytes).
//   - A host's listener also serves /nfc/ for the NFC leases whose device URLs
//     name it (vmkeep_nfc.go).
//   - VCSIM_FOLDER_IGNORE_RANGE=1: Range (and If-Range) are ignored: 200 with
//     the whole file.
//   - VCSIM_FOLDER_LOCK_RUNNING=1: the files of the current disks (descriptor
//     and "-flat" extent of each disk backing) of powered-on VMs answer 500
//     "locked" (any method). Snapshot copies and powered-off VMs' files are
//     served.
//   - VCSIM_STRICT_DCPATH=1: the vCenter's /folder resolves dcPath as the
//     datacenter's inventory path from the root folder ("F0/DC0", a leading
//     "/" is allowed), each part an exact name (no globs, no search by bare
//     name), and dsName as the exact name of one of that datacenter's
//     datastores; both are required. Otherwise 404. (Upstream's
//     finder.DatacenterOrDefault finds a bare name anywhere in the inventory,
//     takes globs, and picks the only datacenter/datastore when empty.)
//
// The inventory switches are in vmkeep_inventory.go, the tasks' in
// vmkeep_tasks.go, the sessions' and authorization's in vmkeep_authz.go.
package simulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const vmkeepTicketCookie = "vmware_cgi_ticket"

var (
	vmkeepFolderAuth    = os.Getenv("VCSIM_FOLDER_AUTH") == "1"
	vmkeepVCRefuse      = os.Getenv("VCSIM_VC_FOLDER_REFUSE") == "1"
	vmkeepHostEndpoints = os.Getenv("VCSIM_HOST_ENDPOINTS") == "1"
	vmkeepIgnoreRange   = os.Getenv("VCSIM_FOLDER_IGNORE_RANGE") == "1"
	vmkeepLockRunning   = os.Getenv("VCSIM_FOLDER_LOCK_RUNNING") == "1"
	vmkeepStrictDCPath  = os.Getenv("VCSIM_STRICT_DCPATH") == "1"
)

// vmkeepCounter counts an endpoint's /folder requests.
type vmkeepCounter struct {
	requests int64
	served   int64
}

// vmkeepHostEndpoint is a simulated ESXi host's own listener.
type vmkeepHostEndpoint struct {
	vmkeepCounter
	name       string
	host       types.ManagedObjectReference
	port       int
	thumbprint string
	server     *http.Server
}

type vmkeepTicket struct {
	url    *url.URL
	method string // "GET", "PUT", ...
}

var (
	vmkeepVCCounter vmkeepCounter
	vmkeepEndpoints []*vmkeepHostEndpoint // set once at start, read-only after

	vmkeepTicketMu sync.Mutex
	vmkeepTickets  = map[string]vmkeepTicket{}
)

func vmkeepRandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// vmkeepIssueTicket remembers a new ticket for spec and returns its id and,
// for a URL on a host endpoint, that host's name and thumbprint.
func vmkeepIssueTicket(spec types.BaseSessionManagerServiceRequestSpec) (id, host, thumbprint string) {
	id = vmkeepRandomHex(20)
	var hs *types.SessionManagerHttpServiceRequestSpec
	switch s := spec.(type) {
	case *types.SessionManagerHttpServiceRequestSpec:
		hs = s
	}
	if hs == nil {
		return id, "", "" // e.g. a vim service spec: not usable on /folder
	}
	u, err := url.Parse(hs.Url)
	if err != nil {
		return id, "", ""
	}
	method := strings.ToUpper(strings.TrimPrefix(hs.Method, "http"))
	if method == "" {
		method = http.MethodGet
	}
	vmkeepTicketMu.Lock()
	vmkeepTickets[id] = vmkeepTicket{url: u, method: method}
	vmkeepTicketMu.Unlock()
	port := vmkeepURLPort(u)
	for _, ep := range vmkeepEndpoints {
		if ep.port == port {
			return id, ep.name, ep.thumbprint
		}
	}
	return id, "", ""
}

func vmkeepURLPort(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	if u.Scheme == "http" {
		return 80
	}
	return 443
}

func vmkeepLocalPort(r *http.Request) int {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if t, ok := a.(*net.TCPAddr); ok {
			return t.Port
		}
	}
	return -1
}

func vmkeepSameQuery(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !reflect.DeepEqual(v, b[k]) {
			return false
		}
	}
	return true
}

// vmkeepRedeemTicket uses up the request's ticket if it was issued for this
// request (method, port, path and query); false otherwise.
func vmkeepRedeemTicket(r *http.Request) bool {
	c, err := r.Cookie(vmkeepTicketCookie)
	if err != nil {
		return false
	}
	vmkeepTicketMu.Lock()
	defer vmkeepTicketMu.Unlock()
	t, ok := vmkeepTickets[c.Value]
	if !ok {
		return false
	}
	if t.method != r.Method || vmkeepURLPort(t.url) != vmkeepLocalPort(r) ||
		path.Clean("/"+t.url.Path) != path.Clean("/"+r.URL.Path) ||
		!vmkeepSameQuery(t.url.Query(), r.URL.Query()) {
		return false
	}
	delete(vmkeepTickets, c.Value)
	return true
}

func vmkeepSessionCookie(s *Service, r *http.Request) bool {
	c, err := r.Cookie(soap.SessionCookieName)
	if err != nil || s == nil {
		return false
	}
	_, ok := s.sm.getSession(c.Value)
	return ok
}

// vmkeepServeFolder serves /folder on the vCenter's listener (ep nil) or on a
// host's endpoint.
func vmkeepServeFolder(s *Service, ep *vmkeepHostEndpoint, w http.ResponseWriter, r *http.Request) {
	counter := &vmkeepVCCounter
	if ep != nil {
		counter = &ep.vmkeepCounter
	}
	atomic.AddInt64(&counter.requests, 1)

	if ep == nil && vmkeepVCRefuse {
		http.Error(w, "vcsim: this vCenter's /folder refuses data requests (VCSIM_VC_FOLDER_REFUSE); use a host", http.StatusForbidden)
		return
	}
	ticket := vmkeepRedeemTicket(r)
	if ep != nil && !ticket {
		http.Error(w, "vcsim: a host's /folder needs a service ticket (cookie "+vmkeepTicketCookie+") for this URL and method", http.StatusUnauthorized)
		return
	}
	if ep == nil && vmkeepFolderAuth && !ticket && !vmkeepSessionCookie(s, r) {
		http.Error(w, "vcsim: /folder needs a session cookie ("+soap.SessionCookieName+") or a service ticket", http.StatusUnauthorized)
		return
	}

	var ds *Datastore
	query := r.URL.Query()
	switch {
	case ep != nil:
		ds = vmkeepHostDatastore(ep, query)
	case vmkeepStrictDCPath:
		ds = vmkeepStrictDatastore(query)
	default:
		var err error
		if ds, err = s.findDatastore(query); err != nil {
			ds = nil
		}
	}
	if ds == nil {
		log.Printf("failed to locate datastore with query params: %s", r.URL.RawQuery)
		w.WriteHeader(http.StatusNotFound)
		return
	}

	if vmkeepLockRunning && vmkeepLocked(ds.Name, strings.TrimPrefix(r.URL.Path, folderPrefix)) {
		http.Error(w, "vcsim: file is locked (opened by a powered-on VM)", http.StatusInternalServerError)
		return
	}
	if vmkeepIgnoreRange {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	atomic.AddInt64(&counter.served, 1)
	serveDatastoreFile(ds, w, r)
}

// vmkeepHostDatastore: dsName among the datastores the host mounts.
func vmkeepHostDatastore(ep *vmkeepHostEndpoint, query url.Values) *Datastore {
	if dc := query.Get("dcPath"); dc != "" && dc != "ha-datacenter" {
		return nil
	}
	name := query.Get("dsName")
	h, ok := Map.Get(ep.host).(*HostSystem)
	if !ok || name == "" {
		return nil
	}
	var refs []types.ManagedObjectReference
	Map.WithLock(h, func() { refs = append(refs, h.Datastore...) })
	for _, ref := range refs {
		if ds, ok := Map.Get(ref).(*Datastore); ok && ds.Name == name {
			return ds
		}
	}
	return nil
}

// vmkeepStrictDatastore: dcPath as an inventory path, dsName exact.
func vmkeepStrictDatastore(query url.Values) *Datastore {
	dcPath := strings.TrimPrefix(query.Get("dcPath"), "/")
	name := query.Get("dsName")
	if dcPath == "" || name == "" {
		return nil
	}
	var cur mo.Reference = Map.Get(Map.content().RootFolder)
	for _, part := range strings.Split(dcPath, "/") {
		f, ok := cur.(*Folder)
		if !ok {
			return nil
		}
		var next mo.Reference
		for _, ref := range f.ChildEntity {
			if e, ok := Map.Get(ref).(mo.Entity); ok && e.Entity().Name == part {
				next = e
				break
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	dc, ok := cur.(*Datacenter)
	if !ok {
		return nil
	}
	for _, ref := range dc.Datastore {
		if ds, ok := Map.Get(ref).(*Datastore); ok && ds.Name == name {
			return ds
		}
	}
	return nil
}

// vmkeepLocked: is file (a path in datastore dsName) one of a powered-on VM's
// current disk files?
func vmkeepLocked(dsName, file string) bool {
	file = strings.TrimPrefix(path.Clean("/"+file), "/")
	for _, e := range Map.All("VirtualMachine") {
		vm, ok := e.(*VirtualMachine)
		if !ok {
			continue
		}
		var names []string
		Map.WithLock(vm, func() {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || vm.Config == nil {
				return
			}
			for _, d := range vm.Config.Hardware.Device {
				disk, ok := d.(*types.VirtualDisk)
				if !ok {
					continue
				}
				if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
					names = append(names, b.GetVirtualDeviceFileBackingInfo().FileName)
				}
			}
		})
		for _, n := range names {
			var p object.DatastorePath
			if !p.FromString(n) || p.Datastore != dsName {
				continue
			}
			desc := path.Clean(p.Path)
			flat := strings.TrimSuffix(desc, ".vmdk") + "-flat.vmdk"
			if file == desc || file == flat {
				return true
			}
		}
	}
	return false
}

// VmkeepCounters serves GET /vmkeep/counters (JSON, see the file's comment).
func VmkeepCounters(w http.ResponseWriter, r *http.Request) {
	type hostCount struct {
		Address    string `json:"address"`
		Port       int    `json:"port"`
		Thumbprint string `json:"thumbprint"`
		Requests   int64  `json:"requests"`
		Served     int64  `json:"served"`
	}
	type vcCount struct {
		Requests int64 `json:"requests"`
		Served   int64 `json:"served"`
	}
	out := struct {
		VCenter vcCount              `json:"vcenter"`
		Hosts   map[string]hostCount `json:"hosts"`
		NFC     vmkeepNfcCounts      `json:"nfc"` // vmkeep_nfc.go
	}{
		VCenter: vcCount{atomic.LoadInt64(&vmkeepVCCounter.requests), atomic.LoadInt64(&vmkeepVCCounter.served)},
		Hosts:   map[string]hostCount{},
		NFC:     vmkeepNfcCountersNow(),
	}
	for _, ep := range vmkeepEndpoints {
		out.Hosts[ep.name] = hostCount{"127.0.0.1", ep.port, ep.thumbprint,
			atomic.LoadInt64(&ep.requests), atomic.LoadInt64(&ep.served)}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// VmkeepStrictSetup applies the inventory switches and starts the hosts'
// endpoints (with VCSIM_HOST_ENDPOINTS=1). Call it after Model.Create; the
// returned function closes the endpoints.
func VmkeepStrictSetup() (func(), error) {
	if err := vmkeepSetDatastoreTypes(os.Getenv("VCSIM_DS_TYPES")); err != nil {
		return nil, err
	}
	if err := vmkeepMarkEncrypted(os.Getenv("VCSIM_ENCRYPTED_VMS")); err != nil {
		return nil, err
	}
	if err := vmkeepTasksSetup(os.Getenv("VCSIM_TASK_DELAY"), os.Getenv("VCSIM_TASK_FAIL")); err != nil {
		return nil, err
	}
	if err := vmkeepAuthzSetup(); err != nil {
		return nil, err
	}
	closeAll := func() {
		for _, ep := range vmkeepEndpoints {
			_ = ep.server.Close()
		}
	}
	if !vmkeepHostEndpoints {
		return closeAll, nil
	}
	var eps []*vmkeepHostEndpoint
	for _, e := range Map.All("HostSystem") {
		h := e.(*HostSystem)
		ep, err := vmkeepStartEndpoint(h)
		if err != nil {
			for _, ep := range eps {
				_ = ep.server.Close()
			}
			return nil, err
		}
		eps = append(eps, ep)
	}
	vmkeepEndpoints = eps
	return closeAll, nil
}

func vmkeepStartEndpoint(h *HostSystem) (*vmkeepHostEndpoint, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: h.Name, Organization: []string{"vcsim ESXi host"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{h.Name},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ep := &vmkeepHostEndpoint{
		name:       h.Name,
		host:       h.Self,
		port:       ln.Addr().(*net.TCPAddr).Port,
		thumbprint: strings.Join(parts, ":"),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(folderPrefix, func(w http.ResponseWriter, r *http.Request) {
		vmkeepServeFolder(nil, ep, w, r)
	})
	mux.HandleFunc(nfcPrefix, func(w http.ResponseWriter, r *http.Request) {
		vmkeepServeNFC(ep, w, r) // vmkeep_nfc.go: the host's NFC leases
	})
	ep.server = &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{
			Certificate: [][]byte{der},
			PrivateKey:  key,
		}}},
		ErrorLog: log.New(os.Stderr, "vcsim host "+h.Name+": ", 0),
	}
	go func() { _ = ep.server.Serve(tls.NewListener(ln, ep.server.TLSConfig)) }()

	Map.WithLock(h, func() {
		h.Summary.Config.Port = int32(ep.port)
		h.Summary.Config.SslThumbprint = ep.thumbprint
	})
	return ep, nil
}
