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
package simulator

import (
	"fmt"
	"os"
	"time"

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
