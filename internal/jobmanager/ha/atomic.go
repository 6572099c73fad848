package ha

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writeAtomic replaces path with data: a temporary file in the same
// directory is written and synced, renamed over path, and the directory is
// synced so the rename survives a crash.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readUint reads the decimal number in path; ok is false if the file
// does not exist. what names the number in the error of a file that does
// not parse, fix says how to repair it.
func readUint(path, what, fix string) (n uint64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	s := strings.TrimSpace(string(b))
	n, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		if len(s) > 20 {
			s = s[:20] + "..."
		}
		return 0, false, fmt.Errorf("%s %s is corrupt (%q is not a number): %s", what, path, s, fix)
	}
	return n, true, nil
}

func formatUint(n uint64) []byte { return []byte(strconv.FormatUint(n, 10) + "\n") }
