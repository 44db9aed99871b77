// SPDX-License-Identifier: Apache-2.0

package cluster

import "syscall"

// sysProcAttr makes a child die with its parent (a crashed test leaves no
// daemons behind).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
