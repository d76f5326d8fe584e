// vmkeep addition (no upstream counterpart): sessions and authorization as
// strict as vCenter's, each part switched on by the environment (read once
// at start; unset means upstream's behaviour). main.go's header lists the
// switches.
//
//   - VCSIM_SESSION_IDLE=5s (a Go duration): SessionIdleTimeout. A session
//     with no SOAP call for longer is gone (patched getSession in
//     session_manager.go): the next SOAP call answers NotAuthenticated and
//     its cookie no longer opens /folder (401 with VCSIM_FOLDER_AUTH=1).
//     /folder requests do not keep a session alive (a client keeps it alive
//     with SOAP calls, e.g. ServiceInstance.CurrentTime). Property reads
//     (RetrieveProperties, RetrievePropertiesEx, Fetch) need a session too,
//     as on vSphere (upstream answers them without one).
//   - VCSIM_METHOD_DISABLING=1: AuthorizationManager.DisableMethods and
//     EnableMethods exist (vCenter's internal API, urn:internalvim25, as
//     govmomi's object.AuthorizationManager sends them; upstream has neither
//     and answers a SOAP fault). DisableMethods(entity[], method[] {method,
//     reasonId}, sourceId) adds the methods (wsdl names, e.g.
//     "RelocateVM_Task") to each entity's disabledMethod; calling one of them
//     on that entity then answers MethodDisabled (source = the sourceId).
//     Each (method, source) pair is kept: EnableMethods(entity[], method[],
//     sourceId) removes that source's disabling only, and a method stays
//     disabled while any source still disables it. sessionScope is ignored.
//   - VCSIM_RESTRICTED_USER=NAME:PASSWORD with
//     VCSIM_RESTRICTED_PRIVILEGES=System.Anonymous,System.View,...: a second
//     account (besides -username) that can log in, for which
//     AuthorizationManager.HasPrivilegeOnEntities / HasPrivilegeOnEntity (by
//     its session id), HasUserPrivilegeOnEntities and
//     FetchUserPrivilegeOnEntities (by its name) grant exactly the listed
//     privileges, on every entity (as a role given on the root folder); an
//     unknown session id is granted nothing. Other accounts are granted
//     everything (upstream). Privileges are not enforced on methods, except
//     Global.DisableMethods / Global.EnableMethods for DisableMethods /
//     EnableMethods (NoPermission). A privilege id unknown to the simulator's
//     Admin role stops vcsim at start.
package simulator

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// vmkeepAuthzSetup applies the session and authorization switches.
func vmkeepAuthzSetup() error {
	if v := os.Getenv("VCSIM_SESSION_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("VCSIM_SESSION_IDLE: %q is not a positive Go duration (5s, 2m)", v)
		}
		SessionIdleTimeout = d
	}
	if err := vmkeepRestrictedSetup(os.Getenv("VCSIM_RESTRICTED_USER"), os.Getenv("VCSIM_RESTRICTED_PRIVILEGES")); err != nil {
		return err
	}
	if os.Getenv("VCSIM_METHOD_DISABLING") == "1" {
		// Without these types the request does not decode: upstream's fault.
		types.Add("DisableMethods", reflect.TypeOf((*vmkeepDisableMethods)(nil)).Elem())
		types.Add("EnableMethods", reflect.TypeOf((*vmkeepEnableMethods)(nil)).Elem())
	}
	return nil
}

// vmkeepNeedsSession: the NotAuthenticated fault for a property read without
// a session when sessions expire (VCSIM_SESSION_IDLE), else nil.
func vmkeepNeedsSession(method *Method) soap.HasFault {
	if SessionIdleTimeout == 0 {
		return nil
	}
	switch method.Name {
	case "RetrieveProperties", "RetrievePropertiesEx", "Fetch":
		fault := &types.NotAuthenticated{
			NoPermission: types.NoPermission{
				Object:      method.This,
				PrivilegeId: "System.View",
			},
		}
		return &serverFaultBody{Reason: Fault("", fault)}
	}
	return nil
}

// The internal API's requests (field names as in govmomi's
// object/authorization_manager_internal.go).
type vmkeepDisabledMethodRequest struct {
	Method   string `xml:"method"`
	ReasonId string `xml:"reasonId,omitempty"`
}

type vmkeepDisableMethods struct {
	This         types.ManagedObjectReference   `xml:"_this"`
	Entity       []types.ManagedObjectReference `xml:"entity"`
	Method       []vmkeepDisabledMethodRequest  `xml:"method,omitempty"`
	SourceId     string                         `xml:"sourceId"`
	SessionScope bool                           `xml:"sessionScope,omitempty"`
}

type vmkeepEnableMethods struct {
	This     types.ManagedObjectReference   `xml:"_this"`
	Entity   []types.ManagedObjectReference `xml:"entity"`
	Method   []string                       `xml:"method,omitempty"`
	SourceId string                         `xml:"sourceId"`
}

// DisableMethodsResponse and EnableMethodsResponse name the answers' elements.
type DisableMethodsResponse struct{}
type EnableMethodsResponse struct{}

type vmkeepDisableMethodsBody struct {
	Res    *DisableMethodsResponse
	Fault_ *soap.Fault
}

func (b *vmkeepDisableMethodsBody) Fault() *soap.Fault { return b.Fault_ }

type vmkeepEnableMethodsBody struct {
	Res    *EnableMethodsResponse
	Fault_ *soap.Fault
}

func (b *vmkeepEnableMethodsBody) Fault() *soap.Fault { return b.Fault_ }

var (
	vmkeepDisabledMu sync.Mutex
	// entity -> method -> sources disabling it, in the order they did
	vmkeepDisabled = map[types.ManagedObjectReference]map[string][]string{}
)

// vmkeepEntities resolves the request's entities (a fault for a missing one).
func vmkeepEntities(refs []types.ManagedObjectReference) ([]mo.Entity, *soap.Fault) {
	var out []mo.Entity
	for _, ref := range refs {
		e, ok := Map.Get(ref).(mo.Entity)
		if !ok {
			return nil, Fault(fmt.Sprintf("managed object not found: %s", ref), &types.ManagedObjectNotFound{Obj: ref})
		}
		out = append(out, e)
	}
	return out, nil
}

// vmkeepPublishDisabled sets the entity's disabledMethod from the table
// (vmkeepDisabledMu held).
func vmkeepPublishDisabled(e mo.Entity) {
	ref := e.Reference()
	names := []string{}
	for m := range vmkeepDisabled[ref] {
		names = append(names, m)
	}
	sort.Strings(names)
	Map.WithLock(e, func() {
		Map.Update(e, []types.PropertyChange{{Name: "disabledMethod", Val: names}})
	})
}

// DisableMethods (vmkeep, VCSIM_METHOD_DISABLING=1): see the file's comment.
func (m *AuthorizationManager) DisableMethods(ctx *Context, req *vmkeepDisableMethods) soap.HasFault {
	body := &vmkeepDisableMethodsBody{}
	if fault := vmkeepCheckPrivilege(ctx, "Global.DisableMethods", m.Self); fault != nil {
		body.Fault_ = fault
		return body
	}
	entities, fault := vmkeepEntities(req.Entity)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	vmkeepDisabledMu.Lock()
	defer vmkeepDisabledMu.Unlock()
	for _, e := range entities {
		ref := e.Reference()
		if vmkeepDisabled[ref] == nil {
			vmkeepDisabled[ref] = map[string][]string{}
		}
		for _, dm := range req.Method {
			sources := vmkeepDisabled[ref][dm.Method]
			known := false
			for _, s := range sources {
				known = known || s == req.SourceId
			}
			if !known {
				vmkeepDisabled[ref][dm.Method] = append(sources, req.SourceId)
			}
		}
		vmkeepPublishDisabled(e)
	}
	body.Res = &DisableMethodsResponse{}
	return body
}

// EnableMethods (vmkeep, VCSIM_METHOD_DISABLING=1): see the file's comment.
func (m *AuthorizationManager) EnableMethods(ctx *Context, req *vmkeepEnableMethods) soap.HasFault {
	body := &vmkeepEnableMethodsBody{}
	if fault := vmkeepCheckPrivilege(ctx, "Global.EnableMethods", m.Self); fault != nil {
		body.Fault_ = fault
		return body
	}
	entities, fault := vmkeepEntities(req.Entity)
	if fault != nil {
		body.Fault_ = fault
		return body
	}
	vmkeepDisabledMu.Lock()
	defer vmkeepDisabledMu.Unlock()
	for _, e := range entities {
		ref := e.Reference()
		for _, name := range req.Method {
			var keep []string
			for _, s := range vmkeepDisabled[ref][name] {
				if s != req.SourceId {
					keep = append(keep, s)
				}
			}
			if len(keep) == 0 {
				delete(vmkeepDisabled[ref], name)
			} else {
				vmkeepDisabled[ref][name] = keep
			}
		}
		vmkeepPublishDisabled(e)
	}
	body.Res = &EnableMethodsResponse{}
	return body
}

// vmkeepMethodDisabled: the MethodDisabled fault for calling method (its wsdl
// name) on ref when disabled, else nil. Called by the patched simulator.go.
func vmkeepMethodDisabled(ref types.ManagedObjectReference, method string) *soap.Fault {
	vmkeepDisabledMu.Lock()
	sources := vmkeepDisabled[ref][method]
	vmkeepDisabledMu.Unlock()
	if len(sources) == 0 {
		return nil
	}
	msg := fmt.Sprintf("The method is disabled by '%s'", sources[0])
	return Fault(msg, &types.MethodDisabled{Source: sources[0]})
}

// The restricted account (set once at start, read-only after).
var (
	vmkeepRestrictedName  string
	vmkeepRestrictedPass  string
	vmkeepRestrictedPrivs []string
	vmkeepRestrictedSet   = map[string]bool{}
)

func vmkeepRestrictedSetup(user, privs string) error {
	if user == "" {
		if privs != "" {
			return fmt.Errorf("VCSIM_RESTRICTED_PRIVILEGES needs VCSIM_RESTRICTED_USER")
		}
		return nil
	}
	kv := strings.SplitN(user, ":", 2)
	if len(kv) != 2 || kv[0] == "" || kv[1] == "" {
		return fmt.Errorf("VCSIM_RESTRICTED_USER: %q is not NAME:PASSWORD", user)
	}
	am := Map.Get(*Map.content().AuthorizationManager).(*AuthorizationManager)
	for _, p := range strings.Split(privs, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, ok := am.privileges[p]; !ok {
			return fmt.Errorf("VCSIM_RESTRICTED_PRIVILEGES: unknown privilege %q", p)
		}
		if !vmkeepRestrictedSet[p] {
			vmkeepRestrictedSet[p] = true
			vmkeepRestrictedPrivs = append(vmkeepRestrictedPrivs, p)
		}
	}
	vmkeepRestrictedName, vmkeepRestrictedPass = kv[0], kv[1]
	return nil
}

// vmkeepRestrictedLogin: is this a login of the restricted account (handled:
// true) and, if so, is the password right (ok)? Called by validLogin.
func vmkeepRestrictedLogin(user, pass string) (handled, ok bool) {
	if vmkeepRestrictedName == "" || user != vmkeepRestrictedName {
		return false, false
	}
	return true, pass == vmkeepRestrictedPass
}

func vmkeepIsRestricted(user string) bool {
	return vmkeepRestrictedName != "" && user == vmkeepRestrictedName
}

func vmkeepRestrictedPrivileges() []string {
	return append([]string(nil), vmkeepRestrictedPrivs...)
}

// HasPrivilegeOnEntityResponse is types.HasPrivilegeOnEntityResponse with
// every element of Returnval encoded (the upstream type's omitempty drops the
// false ones, so a client reads fewer answers than it asked, all true).
type HasPrivilegeOnEntityResponse struct {
	Returnval []bool `xml:"returnval"`
}

type vmkeepHasPrivilegeOnEntityBody struct {
	Res    *HasPrivilegeOnEntityResponse
	Fault_ *soap.Fault
}

func (b *vmkeepHasPrivilegeOnEntityBody) Fault() *soap.Fault { return b.Fault_ }

// vmkeepUserGranted: does the account have the privilege?
func vmkeepUserGranted(user, priv string) bool {
	if !vmkeepIsRestricted(user) {
		return true
	}
	return vmkeepRestrictedSet[priv]
}

// vmkeepSessionGranted: does the session's account have the privilege?
func vmkeepSessionGranted(sessionID, priv string) bool {
	if vmkeepRestrictedName == "" {
		return true // upstream
	}
	s, ok := Map.SessionManager().getSession(sessionID)
	if !ok {
		return false
	}
	return vmkeepUserGranted(s.UserName, priv)
}

// vmkeepCheckPrivilege: NoPermission when the caller is the restricted
// account without the privilege, else nil.
func vmkeepCheckPrivilege(ctx *Context, priv string, obj types.ManagedObjectReference) *soap.Fault {
	if ctx.Session == nil || vmkeepUserGranted(ctx.Session.UserName, priv) {
		return nil
	}
	return Fault(fmt.Sprintf("Permission to perform this operation was denied (%s)", priv),
		&types.NoPermission{Object: obj, PrivilegeId: priv})
}
