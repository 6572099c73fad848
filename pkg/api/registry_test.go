package api

import (
	"errors"
	"strings"
	"testing"
)

func TestRegistrySourceAndSinkMayShareAName(t *testing.T) {
	r := NewRegistry()
	src := OperatorType{Name: "file", Kind: KindSource, NewSource: func(Config) (Source, error) { return nil, nil }}
	sink := OperatorType{Name: "file", Kind: KindSink, NewSink: func(Config) (Sink, error) { return nil, nil }}
	op := OperatorType{Name: "file", Kind: KindOperator, NewOperator: func(Config) (Operator, error) { return nil, nil }}
	if err := r.Register(sink); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(src); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(sink); err == nil {
		t.Fatal("a second sink named file was accepted")
	}
	if err := r.Register(op); err == nil {
		t.Fatal("an operator named like a source and a sink was accepted")
	}
	if got, _ := r.Resolve("file", false); got.Kind != KindSource {
		t.Fatalf("without inputs: %v, want source", got.Kind)
	}
	if got, _ := r.Resolve("file", true); got.Kind != KindSink {
		t.Fatalf("with inputs: %v, want sink", got.Kind)
	}
	if got, _ := r.LookupKind("file", KindSink); got.Kind != KindSink {
		t.Fatalf("LookupKind sink: %v", got.Kind)
	}
	if _, err := r.LookupKind("file", KindOperator); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("LookupKind operator: %v, want ErrUnknownType", err)
	}
	if n := len(r.Types()); n != 2 {
		t.Fatalf("Types() lists %d entries, want 2", n)
	}
	if _, err := r.Lookup("nope"); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestRegistryRejectsDuplicatesAndMissingConstructors(t *testing.T) {
	r := NewRegistry()
	op := OperatorType{Name: "m", Kind: KindOperator, NewOperator: func(Config) (Operator, error) { return nil, nil }}
	if err := r.Register(op); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(op); err == nil {
		t.Fatal("duplicate operator accepted")
	}
	if err := r.Register(OperatorType{Name: "s", Kind: KindSink}); err == nil {
		t.Fatal("sink without NewSink accepted")
	}
}

func TestClone(t *testing.T) {
	r := NewRegistry()
	op := func(name string) OperatorType {
		return OperatorType{Name: name, Kind: KindOperator, NewOperator: func(Config) (Operator, error) { return nil, nil }}
	}
	r.MustRegister(op("a"))
	c := r.Clone()
	c.MustRegister(op("b"))
	if got := strings.Join(c.Names(), ","); got != "a,b" {
		t.Errorf("clone has %s, want a,b", got)
	}
	if got := strings.Join(r.Names(), ","); got != "a" {
		t.Errorf("the original has %s after the clone changed, want a", got)
	}
}
