// SPDX-License-Identifier: Apache-2.0

//go:build linux || darwin

package taskgrid

import "syscall"

// freeSpace is the bytes free for an unprivileged user in the file system
// of dir; 0 when unknown.
func freeSpace(dir string) uint64 {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0
	}
	return uint64(st.Bavail) * uint64(st.Bsize)
}
