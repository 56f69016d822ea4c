package activities

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// This file writes files on the worker's own disk (the cluster key, the gossip
// key): always complete files, durable, and never a second copy of a secret over
// a first one.

// createExclusive writes data to p (perm), unless p exists: then created is false
// and p is left as it is. The data goes to a complete temporary file first, which
// is hard-linked to p; the link fails when p exists, so two workers racing to
// create p end up with one file. A missing directory is created 0700.
func createExclusive(p string, data []byte, perm os.FileMode) (created bool, err error) {
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, err
		}
	}
	tmp, err := writeTempFile(p, data, perm)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	syncDir(dir)
	return true, nil
}

// tightenMode sets p's mode to perm when it is another; what else is wrong with p
// is left to the caller's read.
func tightenMode(p string, perm os.FileMode) error {
	if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != perm {
		return os.Chmod(p, perm)
	}
	return nil
}

// writeTempFile writes data to a new temporary file next to name, synced, with perm.
func writeTempFile(name string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// writeFileAtomic replaces name by a complete new file (temporary file, rename).
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := writeTempFile(name, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(name))
	return nil
}

// syncDir makes renames in dir durable, best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
