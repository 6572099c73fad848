package pebble

import (
	"fmt"

	"github.com/flowrt/flow/pkg/statebackend"
)

// Name is the Pebble backend's name in JobGraph.state_backend.type and in
// statebackend.Lookup, and the format of its native snapshots
// (KeyedStateHandle.format).
const Name = "pebble"

func init() { statebackend.Register(Factory{}) }

// Factory opens Pebble backends and reads their native checkpoints; it is
// registered as Name. Config.Dir is required; Config.SharedCache, when
// set, must be a *Cache (NewCache).
type Factory struct{}

var _ statebackend.NativeFactory = Factory{}

// Name implements statebackend.Factory.
func (Factory) Name() string { return Name }

// OnDisk implements statebackend.Factory: true.
func (Factory) OnDisk() bool { return true }

// Options converts a statebackend.Config into the Options of Open.
func (Factory) Options(cfg statebackend.Config) (Options, error) {
	o := Options{
		Options:      cfg.Options,
		CacheSize:    cfg.BlockCacheSize,
		MemTableSize: uint64(cfg.MemtableSize),
		Compression:  cfg.Compression,
		Logger:       cfg.Logger,
	}
	if cfg.BlockCacheSize < 0 || cfg.MemtableSize < 0 {
		return o, fmt.Errorf("pebble state backend: sizes must not be negative (blockCacheSize %d, memtableSize %d)", cfg.BlockCacheSize, cfg.MemtableSize)
	}
	switch c := cfg.SharedCache.(type) {
	case nil:
	case *Cache:
		o.Cache = c
	default:
		return o, fmt.Errorf("pebble state backend: SharedCache is a %T: pass a *pebble.Cache from pebble.NewCache, or nil", cfg.SharedCache)
	}
	return o, nil
}

// Open implements statebackend.Factory (Open in cfg.Dir).
func (f Factory) Open(cfg statebackend.Config) (statebackend.Backend, error) {
	o, err := f.Options(cfg)
	if err != nil {
		return nil, err
	}
	e, err := Open(cfg.Dir, o)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// VerifyFile implements statebackend.NativeFactory (VerifyFile).
func (Factory) VerifyFile(path, name string, size int64) error { return VerifyFile(path, name, size) }

// VerifyCheckpoint implements statebackend.NativeFactory (VerifyCheckpoint).
func (Factory) VerifyCheckpoint(dir string, names map[string]string) error {
	return VerifyCheckpoint(dir, names)
}

// OpenReadOnly implements statebackend.NativeFactory (OpenReadOnly).
func (f Factory) OpenReadOnly(dir string, cfg statebackend.Config) (statebackend.Backend, error) {
	o, err := f.Options(cfg)
	if err != nil {
		return nil, err
	}
	e, err := OpenReadOnly(dir, o)
	if err != nil {
		return nil, err
	}
	return e, nil
}
