// Command vcsim runs govmomi's vSphere API simulator for vmkeep's tests.
//
// It is built by scripts/vcsim/build.sh against the Debian package
// golang-github-vmware-govmomi-dev (govmomi 0.24.2, GOPATH mode), with the
// patched simulator files under scripts/vcsim/overlay/.
//
// Once the server listens, exactly one line is written to stdout:
//
//	VCSIM_URL=https://127.0.0.1:PORT/sdk VCSIM_HOST=127.0.0.1 VCSIM_PORT=PORT VCSIM_PID=PID
//
// (space separated KEY=VALUE pairs, no credentials in the URL). Everything
// else goes to stderr. The process runs until SIGINT/SIGTERM (or, with
// -stdinexit, until its stdin is closed), then removes the model's temporary
// datastore directories and exits 0.
//
// vmkeep additions in overlay/simulator/vmkeep_cbt.go: snapshots freeze a copy
// of each disk ("<disk>-snapN.vmdk"/"-flat.vmdk", deleted by RemoveSnapshot),
// and VirtualMachine.QueryChangedDiskAreas implements Changed Block Tracking
// for VMs with config.changeTrackingEnabled. Environment:
//
//	VCSIM_CBT_MAX_EXTENTS=N  at most N extents per QueryChangedDiskAreas reply
//	                         (Length then stops short of the disk's end, so
//	                         clients must page with startOffset); unset or 0:
//	                         replies cover the rest of the disk.
//	VCSIM_CBT_HIDE_EVERY=N   with an earlier changeId, leave out every Nth
//	                         changed area (1: all): a CBT bug on demand.
//
// vmkeep additions in overlay/simulator/vmkeep_strict.go (with the patched
// simulator.go and session_manager.go): a data path as strict as vSphere's,
// each part switched on by the environment (unset: upstream's lenient
// behaviour). Details in vmkeep_strict.go's header.
//
//	VCSIM_FOLDER_AUTH=1         the vCenter's /folder needs a logged-in session's
//	                            cookie (vmware_soap_session) or a service ticket
//	                            (cookie vmware_cgi_ticket), else 401. Tickets from
//	                            SessionManager.AcquireGenericServiceTicket are
//	                            always single use and bound to their spec's URL
//	                            (port, path, query) and method.
//	VCSIM_VC_FOLDER_REFUSE=1    the vCenter's /folder answers 403 to everything
//	                            (only the hosts' endpoints serve data).
//	VCSIM_HOST_ENDPOINTS=1      each HostSystem gets its own https listener on
//	                            127.0.0.1 with its own self-signed certificate,
//	                            serving /folder for the datastores it mounts to
//	                            ticket holders only (a session cookie gets 401).
//	                            A client finds it as on vSphere: address = the
//	                            management vmknic's IP (config.network.vnic[0],
//	                            config.virtualNicManagerInfo "management" vmk0:
//	                            127.0.0.1, as host names DC0_H0... do not resolve
//	                            and stay unchanged), port = summary.config.port,
//	                            certificate SHA-1 = summary.config.sslThumbprint.
//	                            config.certificate stays unset (govmomi 0.24.2
//	                            would encode it in a form pyVmomi cannot read).
//	VCSIM_FOLDER_IGNORE_RANGE=1 /folder ignores Range: 200 with the whole file.
//	VCSIM_FOLDER_LOCK_RUNNING=1 the current disk files (descriptor and -flat) of
//	                            powered-on VMs answer 500 "locked".
//	VCSIM_STRICT_DCPATH=1       the vCenter's /folder takes dcPath only as the
//	                            datacenter's inventory path ("F0/DC0" with
//	                            -folder 1) and dsName as an exact name, both
//	                            required; else 404 (upstream finds a bare name
//	                            anywhere, globs, and defaults when empty).
//	VCSIM_DS_TYPES=NAME=TYPE,.. summary.type of those datastores (VMFS, NFS,
//	                            NFS41, CIFS, vsan, VVOL, vfat, PMEM, OTHER).
//	VCSIM_DS_URL=vmfs           datastores' info.url and summary.url read as
//	                            "ds:///vmfs/volumes/<id>/" (default: the local
//	                            folder, which vmkeep's "direct" transport uses).
//	VCSIM_ENCRYPTED_VMS=A,B     those VMs get config.keyId and their disks (also
//	                            ones added later) backing.keyId.
//
// vmkeep addition in overlay/simulator/vmkeep_hotadd.go (with the patched
// virtual_machine.go): hot-add. A FlatVer2 disk added without backing.uuid
// gets one ("6000C29…", as ESXi gives).
//
//	VCSIM_BY_ID_DIR=/path       a disk added to a VM as an existing file
//	                            (ReconfigVM, no fileOperation) gets a symlink
//	                            /path/wwn-0x<uuid hex lower> to its flat file,
//	                            removed when the disk is removed (udev's
//	                            /dev/disk/by-id, played for vmkeep's tests).
//
// vmkeep additions in overlay/simulator/vmkeep_tasks.go (with the patched
// task.go, snapshot.go and virtual_machine.go): tasks as slow and fallible as
// vSphere's. KIND is one of CreateSnapshot, RemoveSnapshot, RemoveAllSnapshots,
// RevertToSnapshot, ReconfigVM, RelocateVM, ConsolidateVMDisks
// (case-insensitive, "_Task" optional); a bad value stops vcsim at start.
//
//	VCSIM_TASK_DELAY=KIND=DUR,..  tasks of that kind answer "running" and stay
//	                            so for DUR (a Go duration: 2s, 500ms), their
//	                            info.progress rising by 10; then they execute
//	                            and complete. Unset: upstream's tasks, complete
//	                            when the method answers.
//	VCSIM_TASK_FAIL=KIND:N,..   the Nth task of that kind (from 1, counted from
//	                            start; a kind may be named several times) fails
//	                            with GenericVmConfigFault ("vcsim: injected
//	                            failure ...") without any effect.
//	                            With either switch, these kinds' TaskInfo.name
//	                            is vSphere's ("CreateSnapshot_Task", ...).
//	VCSIM_CONSOLIDATION_NEEDED=1  RemoveSnapshot_Task and RemoveAllSnapshots_Task
//	                            leave runtime.consolidationNeeded true, and
//	                            VirtualMachine.ConsolidateVMDisks_Task exists
//	                            (it clears it). Unset: it answers MethodNotFound.
//
// vmkeep additions in overlay/simulator/vmkeep_authz.go (with the patched
// session_manager.go and simulator.go): sessions and authorization as on
// vCenter.
//
//	VCSIM_SESSION_IDLE=DUR      SessionIdleTimeout (a Go duration: 5s, 30m): a
//	                            session without a SOAP call for longer is gone
//	                            at once; the next call answers NotAuthenticated
//	                            and its cookie no longer opens /folder (401 with
//	                            VCSIM_FOLDER_AUTH=1). /folder requests do not
//	                            keep a session alive. Property reads without a
//	                            session answer NotAuthenticated too (upstream
//	                            answers them, each property missing).
//	VCSIM_METHOD_DISABLING=1    AuthorizationManager.DisableMethods and
//	                            EnableMethods exist (vCenter's internal API,
//	                            urn:internalvim25; upstream has neither): the
//	                            methods (wsdl names, "RelocateVM_Task") are kept
//	                            per entity and source in disabledMethod, and
//	                            calling one answers MethodDisabled (source =
//	                            sourceId); EnableMethods re-enables only its
//	                            source's disabling.
//	VCSIM_RESTRICTED_USER=NAME:PASSWORD
//	VCSIM_RESTRICTED_PRIVILEGES=PRIV,..
//	                            a second account (besides -username) that can
//	                            log in and is granted exactly PRIV,.. (e.g.
//	                            System.Anonymous,System.View,VirtualMachine.
//	                            State.CreateSnapshot) on every entity, as
//	                            AuthorizationManager.HasPrivilegeOnEntities,
//	                            HasPrivilegeOnEntity (by session id),
//	                            HasUserPrivilegeOnEntities and
//	                            FetchUserPrivilegeOnEntities (by user name)
//	                            answer; other accounts are granted everything
//	                            (upstream). Enforced only on DisableMethods /
//	                            EnableMethods (Global.DisableMethods /
//	                            Global.EnableMethods, else NoPermission).
//
// vmkeep additions in overlay/simulator/vmkeep_nfc.go (with the patched
// http_nfc_lease.go and resource_pool.go): NFC imports that keep what is sent.
// Always on: an upload to an ImportVApp lease's disk URL must be a
// streamOptimized VMDK (else 400, the disk untouched); its grains are written
// into the disk's "-flat.vmdk" (sparse, sized to the disk). Device keys are
// vCenter's ("/<vm>/VirtualLsiLogicController0:1"); after
// HttpNfcLeaseComplete/Abort the URLs answer 404; HttpNfcLeaseAbort destroys
// the imported VM. With VCSIM_HOST_ENDPOINTS=1 the device URLs name the
// endpoint of the VM's host (127.0.0.1:<port>, sslThumbprint = its SHA-1),
// which serves /nfc/ (the vCenter's /nfc then answers 404 for them); without
// it, upstream's "https://*/nfc/..." on the vCenter's listener.
//
//	VCSIM_NFC_FAIL_ONCE=N       the Nth NFC upload (from 1, counted from start)
//	                            is dropped: 64 KiB of its body are read, then
//	                            the connection is closed without an answer.
//	VCSIM_NFC_FAIL_FROM=N       the Nth NFC upload and every later one are
//	                            dropped so.
//
// Always on: GET /vmkeep/counters on the vCenter's listener answers JSON
// counts of /folder requests per endpoint ("vcenter" and each host by name,
// with the host's address, port and thumbprint): "requests" (all) and
// "served" (passed the checks and handed to the file server); and "nfc":
// NFC upload "bytes_received" (body bytes read, failed uploads too),
// "attempts" (uploads started), "uploads" (written), the same per lease id
// under "leases".
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("vcsim: ")

	model := simulator.VPX()

	// Inventory size (same names and meaning as upstream vcsim).
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "number of datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "number of clusters per datacenter")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "number of hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "number of standalone hosts per datacenter")
	flag.IntVar(&model.Machine, "vm", model.Machine, "number of virtual machines per resource pool (i.e. per cluster and per standalone host)")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "number of local datastores")
	flag.IntVar(&model.Pool, "pool", model.Pool, "number of child resource pools per cluster")
	flag.IntVar(&model.Folder, "folder", model.Folder, "number of folders")
	flag.BoolVar(&model.Autostart, "autostart", model.Autostart, "power on the VMs the model creates")

	isESX := flag.Bool("esx", false, "simulate a standalone ESX host instead of vCenter")
	listen := flag.String("l", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	user := flag.String("username", "", "login user name (empty: any user name and password are accepted)")
	pass := flag.String("password", "", "login password (used with -username)")
	useTLS := flag.Bool("tls", true, "serve HTTPS (HTTP when false)")
	certFile := flag.String("tlscert", "", "TLS certificate file (PEM); default: the simulator's built-in test certificate")
	keyFile := flag.String("tlskey", "", "TLS key file (PEM), with -tlscert")
	trace := flag.Bool("trace", false, "trace SOAP requests and responses to stderr")
	stdinExit := flag.Bool("stdinexit", false, "exit when stdin reaches EOF (e.g. when the parent process dies)")
	flag.Parse()

	if flag.NArg() != 0 {
		log.Fatalf("unexpected arguments: %v", flag.Args())
	}
	if (*certFile == "") != (*keyFile == "") {
		log.Fatal("-tlscert and -tlskey must be given together")
	}
	if *pass != "" && *user == "" {
		log.Fatal("-password needs -username")
	}

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("-l %q: %v", *listen, err)
	}

	if *isESX {
		vpx := model
		model = simulator.ESX()
		model.Datastore = vpx.Datastore
		model.Machine = vpx.Machine
		model.Autostart = vpx.Autostart
	}

	simulator.Trace = *trace // traces go to stderr (simulator.TraceFile)

	const tag = " (govmomi simulator)"
	model.ServiceContent.About.FullName += tag
	model.ServiceContent.About.OsType = runtime.GOOS + "-" + runtime.GOARCH
	esx.HostSystem.Summary.ManagementServerIp = host

	// Catch signals before anything is created, so that a signal sent right
	// after the VCSIM_URL line still removes the temporary datastores.
	done := make(chan os.Signal, 1)
	signal.Notify(done, syscall.SIGINT, syscall.SIGTERM)

	if err := model.Create(); err != nil {
		log.Fatalf("creating the inventory: %v", err)
	}
	closeHosts, err := simulator.VmkeepStrictSetup()
	if err != nil {
		model.Remove()
		log.Fatalf("strict simulator setup: %v", err)
	}

	model.Service.Listen = &url.URL{Host: *listen}
	if *user != "" {
		model.Service.Listen.User = url.UserPassword(*user, *pass)
	}
	model.Service.ServeMux = http.NewServeMux()
	model.Service.ServeMux.HandleFunc("/vmkeep/counters", simulator.VmkeepCounters)
	model.Service.RegisterEndpoints = true
	if *useTLS {
		model.Service.TLS = new(tls.Config)
		if *certFile != "" {
			cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				closeHosts()
				model.Remove()
				log.Fatalf("loading TLS certificate: %v", err)
			}
			model.Service.TLS.Certificates = []tls.Certificate{cert}
		}
	}

	server := model.Service.NewServer()

	u := *server.URL
	u.User = nil // never print credentials
	_, port, _ := net.SplitHostPort(u.Host)
	fmt.Fprintf(os.Stdout, "VCSIM_URL=%s VCSIM_HOST=%s VCSIM_PORT=%s VCSIM_PID=%d\n",
		u.String(), u.Hostname(), port, os.Getpid())
	_ = os.Stdout.Sync() // os.Stdout is unbuffered; Sync fails harmlessly on pipes

	if *stdinExit {
		go func() {
			_, _ = io.Copy(ioutil.Discard, os.Stdin)
			done <- syscall.SIGTERM
		}()
	}
	<-done

	server.Close()
	closeHosts()
	model.Remove()
}
