//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package datadir

import "os"

// tryLock does not exclude anything where flock(2) is missing.
func tryLock(*os.File) (busy bool, err error) { return false, nil }
