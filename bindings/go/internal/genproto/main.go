// SPDX-License-Identifier: Apache-2.0

// Command genproto generates the Go stubs of proto/taskgrid/v1 into
// taskgridpb/ (it is what `go generate ./...` runs), or into another
// module-shaped directory with -out, which is how the drift test checks that
// the committed stubs match proto/.
//
// The protoc plug-ins are the versions pinned by the tool directives of
// go.mod: `go tool -n` builds them (once, into the build cache) and prints
// their paths, so every machine generates the same bytes and nothing needs
// installing beyond protoc itself, which comes from PATH.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/bindings/go/internal/modroot"
)

// With --go_opt=module=<module path>, protoc-gen-go writes package
// github.com/.../taskgridpb to <out>/taskgridpb/.
const modulePath = modroot.Path

// protoFiles are generated, relative to the proto root.
var protoFiles = []string{"taskgrid/v1/taskgrid.proto"}

func main() {
	out := flag.String("out", "", "module-shaped output directory (default: this module's root)")
	protoRoot := flag.String("proto", "", "proto root holding taskgrid/v1 (default: <repository>/proto)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *out, *protoRoot); err != nil {
		fmt.Fprintln(os.Stderr, "genproto:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, protoRoot string) error {
	root, err := modroot.Find()
	if err != nil {
		return err
	}
	if out == "" {
		out = root
	}
	if protoRoot == "" {
		// bindings/go -> the repository's proto/.
		protoRoot = filepath.Join(root, "..", "..", "proto")
	}
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		return fmt.Errorf("protoc is not on PATH (Debian: apt-get install protobuf-compiler): %w", err)
	}
	goPlugin, err := toolPath(ctx, root, "protoc-gen-go")
	if err != nil {
		return err
	}
	grpcPlugin, err := toolPath(ctx, root, "protoc-gen-go-grpc")
	if err != nil {
		return err
	}
	args := []string{
		"-I", protoRoot,
		"--plugin=protoc-gen-go=" + goPlugin,
		"--plugin=protoc-gen-go-grpc=" + grpcPlugin,
		"--go_out=" + out, "--go_opt=module=" + modulePath,
		"--go-grpc_out=" + out, "--go-grpc_opt=module=" + modulePath,
	}
	args = append(args, protoFiles...)
	cmd := exec.CommandContext(ctx, protoc, args...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("protoc %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// toolPath builds a tool pinned in go.mod and returns its executable's path.
func toolPath(ctx context.Context, root, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", name)
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}
