package statebackend

import "time"

// The state handles' methods: each counts the access and times one in
// AccessSampleEvery (metrics.go); the work is in the unexported methods
// of engine.go.

func (s *valueState) Get() ([]byte, bool, error) {
	if !s.e.mx.sample() {
		return s.get()
	}
	t0 := time.Now()
	b, ok, err := s.get()
	s.e.mx.read.observe(t0)
	return b, ok, err
}

func (s *valueState) Put(v []byte) error {
	if !s.e.mx.sample() {
		return s.put(v)
	}
	t0 := time.Now()
	err := s.put(v)
	s.e.mx.write.observe(t0)
	return err
}

func (s *valueState) Clear() error {
	if !s.e.mx.sample() {
		return s.clear()
	}
	t0 := time.Now()
	err := s.clear()
	s.e.mx.write.observe(t0)
	return err
}

func (s *listState) Append(v []byte) error {
	if !s.e.mx.sample() {
		return s.append(v)
	}
	t0 := time.Now()
	err := s.append(v)
	s.e.mx.write.observe(t0)
	return err
}

func (s *listState) Range(fn func(v []byte) bool) error {
	if !s.e.mx.sample() {
		return s.rangeList(fn)
	}
	t0 := time.Now()
	err := s.rangeList(fn)
	s.e.mx.read.observe(t0)
	return err
}

func (s *listState) Clear() error {
	if !s.e.mx.sample() {
		return s.clear()
	}
	t0 := time.Now()
	err := s.clear()
	s.e.mx.write.observe(t0)
	return err
}

func (s *mapState) Get(uk []byte) ([]byte, bool, error) {
	if !s.e.mx.sample() {
		return s.get(uk)
	}
	t0 := time.Now()
	b, ok, err := s.get(uk)
	s.e.mx.read.observe(t0)
	return b, ok, err
}

func (s *mapState) Put(uk, v []byte) error {
	if !s.e.mx.sample() {
		return s.put(uk, v)
	}
	t0 := time.Now()
	err := s.put(uk, v)
	s.e.mx.write.observe(t0)
	return err
}

func (s *mapState) Delete(uk []byte) error {
	if !s.e.mx.sample() {
		return s.delete(uk)
	}
	t0 := time.Now()
	err := s.delete(uk)
	s.e.mx.write.observe(t0)
	return err
}

func (s *mapState) Range(fn func(uk, v []byte) bool) error {
	if !s.e.mx.sample() {
		return s.rangeMap(fn)
	}
	t0 := time.Now()
	err := s.rangeMap(fn)
	s.e.mx.read.observe(t0)
	return err
}

func (s *mapState) Clear() error {
	if !s.e.mx.sample() {
		return s.clear()
	}
	t0 := time.Now()
	err := s.clear()
	s.e.mx.write.observe(t0)
	return err
}
