/*
Copyright (c) 2019 VMware, Inc. All Rights Reserved.

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
	"log"
	"net/http"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type HttpNfcLease struct {
	mo.HttpNfcLease
	files map[string]string

	// vmkeep: what uploads write and who may send them (vmkeep_nfc.go).
	vmkeep vmkeepNfcLease
}

var (
	nfcLease  sync.Map // HTTP access to NFC leases are token based and do not require Session auth
	nfcPrefix = "/nfc/"
)

// ServeNFC handles NFC file upload/download on the vCenter's listener.
// vmkeep: uploads are decoded and written (vmkeepServeNFC in vmkeep_nfc.go);
// upstream discarded them.
func ServeNFC(w http.ResponseWriter, r *http.Request) {
	vmkeepServeNFC(nil, w, r)
}

// nfcLookup finds the lease and file an NFC URL names (nil, "" when either is
// unknown or the lease has ended).
func nfcLookup(r *http.Request) (*HttpNfcLease, string, string) {
	p := strings.Split(r.URL.Path, "/")
	if len(p) < 2 {
		return nil, "", ""
	}
	id, name := p[len(p)-2], p[len(p)-1]
	ref := types.ManagedObjectReference{Type: "HttpNfcLease", Value: id}
	l, ok := nfcLease.Load(ref)
	if !ok {
		log.Printf("invalid NFC lease: %s", id)
		return nil, "", ""
	}
	lease := l.(*HttpNfcLease)
	file, ok := lease.files[name]
	if !ok {
		log.Printf("invalid NFC device id: %s", name)
		return nil, "", ""
	}
	return lease, name, file
}

func NewHttpNfcLease(ctx *Context, entity types.ManagedObjectReference) *HttpNfcLease {
	lease := &HttpNfcLease{
		HttpNfcLease: mo.HttpNfcLease{
			Info: &types.HttpNfcLeaseInfo{
				Entity:       entity,
				LeaseTimeout: 30000,
			},
			State: types.HttpNfcLeaseStateReady,
		},
		files: make(map[string]string),
	}
	lease.vmkeep.disks = make(map[string]int64)

	ctx.Session.Put(lease)
	nfcLease.Store(lease.Reference(), lease)

	return lease
}

// HttpNfcLeaseComplete ends the lease. vmkeep: its URLs answer 404 from now on.
func (l *HttpNfcLease) HttpNfcLeaseComplete(ctx *Context, req *types.HttpNfcLeaseComplete) soap.HasFault {
	l.vmkeepEnd()
	l.State = types.HttpNfcLeaseStateDone
	ctx.Session.Remove(req.This)
	nfcLease.Delete(req.This)

	return &methods.HttpNfcLeaseCompleteBody{
		Res: new(types.HttpNfcLeaseCompleteResponse),
	}
}

// HttpNfcLeaseAbort ends the lease. vmkeep: as vCenter, the VM the import
// created is destroyed, and the lease's URLs answer 404 from now on.
func (l *HttpNfcLease) HttpNfcLeaseAbort(ctx *Context, req *types.HttpNfcLeaseAbort) soap.HasFault {
	l.vmkeepEnd()
	l.State = types.HttpNfcLeaseStateError
	l.Error = req.Fault
	ctx.Session.Remove(req.This)
	nfcLease.Delete(req.This)
	vmkeepNfcDestroy(ctx, l)

	return &methods.HttpNfcLeaseAbortBody{
		Res: new(types.HttpNfcLeaseAbortResponse),
	}
}

func (l *HttpNfcLease) HttpNfcLeaseProgress(ctx *Context, req *types.HttpNfcLeaseProgress) soap.HasFault {
	l.TransferProgress = req.Percent

	return &methods.HttpNfcLeaseProgressBody{
		Res: new(types.HttpNfcLeaseProgressResponse),
	}
}
