// SPDX-License-Identifier: Apache-2.0

// Package taskgridpb holds the Go stubs of the taskgrid.v1 protocol
// (proto/taskgrid/v1/taskgrid.proto): messages from protoc-gen-go and the
// Scheduler and WorkerLink services from protoc-gen-go-grpc. The .pb.go files
// are generated, never edited: change the proto, then run `go generate ./...`
// in bindings/go. drift_test.go fails when they no longer match proto/.
//
// Most programs want the idiomatic package taskgrid instead; these stubs are
// for callers who need the raw protocol.
package taskgridpb

//go:generate go run ../internal/genproto
