// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package cluster

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
