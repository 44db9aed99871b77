// SPDX-License-Identifier: Apache-2.0

// Package modroot finds the root directory of this Go module, for the
// tools and test helpers that run `go` or protoc on it.
package modroot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Path is this module's path.
const Path = "github.com/taskgrid/taskgrid/bindings/go"

// Find walks up from the working directory to the directory whose go.mod
// declares Path.
func Find() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module "+Path+"\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("not inside the module %s (working directory %s)", Path, wd)
		}
	}
}
