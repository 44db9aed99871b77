// SPDX-License-Identifier: Apache-2.0

// drift_test.go: the committed stubs are exactly what proto/ generates.

package taskgridpb_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/taskgrid/taskgrid/bindings/go/internal/tgtest"
)

// TestStubsMatchProto regenerates the stubs from proto/ into a temporary
// directory, with the plug-in versions pinned in go.mod, and compares them
// byte for byte with the committed ones: the stubs are never edited by
// hand, and a change to proto/ must come with `go generate ./...`.
func TestStubsMatchProto(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		tgtest.SkipOrFail(t, "protoc is not on PATH (Debian: apt-get install protobuf-compiler); cannot check the stubs against proto/")
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "run", "../internal/genproto", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("regenerating the stubs: %v\n%s", err, b)
	}
	for _, name := range []string{"taskgrid.pb.go", "taskgrid_grpc.pb.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, "taskgridpb", name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("taskgridpb/%s differs from what proto/ generates: run `go generate ./...` in bindings/go (and never edit it by hand)\n%s",
				name, firstDifference(committed, fresh))
		}
	}
}

// firstDifference shows the first differing line.
func firstDifference(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y []byte
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("line %d:\n  committed: %s\n  generated: %s", i+1, x, y)
		}
	}
	return ""
}
