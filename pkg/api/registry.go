package api

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind says where an operator type can stand in a job graph.
type Kind int

const (
	KindSource Kind = iota + 1
	KindOperator
	KindSink
)

func (k Kind) String() string {
	switch k {
	case KindSource:
		return "source"
	case KindOperator:
		return "operator"
	case KindSink:
		return "sink"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// FieldType is the type of a config field.
type FieldType string

const (
	TypeString     FieldType = "string"
	TypeInt        FieldType = "int"
	TypeFloat      FieldType = "float"
	TypeBool       FieldType = "bool"
	TypeDuration   FieldType = "duration"   // Go duration string such as "500ms"
	TypeExpression FieldType = "expression" // expr-lang expression over the record
	TypeStringList FieldType = "[]string"
	TypeStringMap  FieldType = "map[string]string" // e.g. select: output field -> expression
)

// Field describes one config field of an operator type. The schema drives
// spec validation and the generated reference page.
type Field struct {
	Name     string
	Type     FieldType
	Doc      string
	Required bool
	// Default is used when the field is absent (nil: no default).
	Default any
	// Enum, when set, lists the allowed values of a string field.
	Enum []string
	// Validate checks the decoded value (after type checks). Optional.
	Validate func(v any) error
}

// OperatorType registers an operator type by name. Exactly one of NewSource,
// NewOperator or NewSink is set, matching Kind.
type OperatorType struct {
	Name string
	Kind Kind
	Doc  string
	// Keyed operators need a keyBy on their input.
	Keyed bool
	// Inputs is 2 for a two-input operator (its NewOperator returns a
	// TwoInputOperator and a spec lists exactly two inputs, the first
	// feeding ProcessRecord and the second ProcessRecord2); 0 or 1: a
	// single input, the union of every listed input.
	Inputs int
	Fields []Field
	// SideOutputs are the names of an operator's side outputs: streams
	// besides its main output that a job reads as edges of their own (a
	// spec's `inputs: [op.late]`, jobbuilder's Op.SideOutput). The
	// operator emits into them with the Collector SideOutputOf gives.
	// Names are letters, digits, '_' and '-', unique.
	SideOutputs []string
	// Watermarks: a source that emits watermarks itself in every
	// configuration (SourceOutput.EmitWatermark), such as one that sends
	// api.MaxWatermark once its bounded input is out. Event-time checks
	// (JobView.SourcesWithoutWatermarks) do not count it as a source
	// without watermarks.
	Watermarks bool
	// Example is a YAML snippet of the operator in a job spec, for docs.
	Example string

	NewSource   func(cfg Config) (Source, error)
	NewOperator func(cfg Config) (Operator, error)
	NewSink     func(cfg Config) (Sink, error)

	// CheckJob, when set, is called for each operator of the type when a
	// job is built or submitted (jobspec.Parse, jobbuilder.Build, the
	// JobManager's submit), with what the job gives the operator; an error
	// refuses the job. See JobView.
	CheckJob func(v JobView) error

	// CheckRestore, when set, reads what a snapshot holds for an operator
	// of the type (a source's splits and list states) and compares it with
	// the operator's config in the job about to start from it (flowctl
	// savepoint check; the JobManager's submit with a restore path, which
	// refuses RestoreCheck.Removed unless non-restored state is allowed).
	// An error means the state cannot be read by this type.
	CheckRestore func(v RestoreView) (RestoreCheck, error)
}

// Field returns the named field's schema.
func (t *OperatorType) Field(name string) (Field, bool) {
	for _, f := range t.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Registry maps operator type names to their definitions. A name has one
// definition, except that a source and a sink may share a name (the `file`
// connector reads and writes): the operator's place in the graph (with or
// without inputs) picks one.
type Registry struct {
	mu    sync.RWMutex
	types map[string][]*OperatorType
}

// ErrUnknownType is returned (wrapped) for a type name nobody registered.
var ErrUnknownType = errors.New("unknown operator type")

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{types: make(map[string][]*OperatorType)}
}

// Register adds an operator type. It is an error to leave the constructor
// matching Kind unset, or to register a name twice, unless one registration
// is a source and the other a sink.
func (r *Registry) Register(t OperatorType) error {
	if t.Name == "" {
		return errors.New("register operator type: empty name")
	}
	ok := false
	switch t.Kind {
	case KindSource:
		ok = t.NewSource != nil
	case KindOperator:
		ok = t.NewOperator != nil
	case KindSink:
		ok = t.NewSink != nil
	}
	if !ok {
		return fmt.Errorf("register operator type %q: kind %v needs its constructor", t.Name, t.Kind)
	}
	if t.Inputs < 0 || t.Inputs > 2 || (t.Inputs == 2 && t.Kind != KindOperator) {
		return fmt.Errorf("register operator type %q: Inputs %d: only an operator can have 2 inputs (0 or 1: one)", t.Name, t.Inputs)
	}
	if len(t.SideOutputs) > 0 && t.Kind != KindOperator {
		return fmt.Errorf("register operator type %q: a %v has no side outputs: only an operator can", t.Name, t.Kind)
	}
	for i, s := range t.SideOutputs {
		if !validSideOutputName(s) || slices.Contains(t.SideOutputs[:i], s) {
			return fmt.Errorf("register operator type %q: side output %q: names must be unique letters, digits, '_' and '-'", t.Name, s)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev := r.types[t.Name]; len(prev) > 0 {
		if len(prev) > 1 || prev[0].Kind == t.Kind || prev[0].Kind == KindOperator || t.Kind == KindOperator {
			return fmt.Errorf("register operator type %q: already registered", t.Name)
		}
	}
	r.types[t.Name] = append(r.types[t.Name], &t)
	sort.Slice(r.types[t.Name], func(i, j int) bool { return r.types[t.Name][i].Kind < r.types[t.Name][j].Kind })
	return nil
}

// Clone returns a new registry holding r's types, for a program that adds
// its own types to the built-ins without changing Default:
//
//	reg := api.Default.Clone()
//	reg.MustRegister(myType)
func (r *Registry) Clone() *Registry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := NewRegistry()
	for n, vs := range r.types {
		c.types[n] = append([]*OperatorType(nil), vs...)
	}
	return c
}

// MustRegister is Register for init functions of built-in packages.
func (r *Registry) MustRegister(t OperatorType) {
	if err := r.Register(t); err != nil {
		panic(err)
	}
}

// Lookup returns the named type (for a name shared by a source and a sink,
// the source) or an error wrapping ErrUnknownType that lists the known names.
func (r *Registry) Lookup(name string) (*OperatorType, error) {
	vs, err := r.Variants(name)
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// Resolve returns the named type as it stands in a graph: an operator
// without inputs resolves to the source of a shared name, one with inputs to
// the sink.
func (r *Registry) Resolve(name string, hasInputs bool) (*OperatorType, error) {
	vs, err := r.Variants(name)
	if err != nil {
		return nil, err
	}
	if hasInputs {
		return vs[len(vs)-1], nil
	}
	return vs[0], nil
}

// LookupKind returns the named type of the given kind.
func (r *Registry) LookupKind(name string, kind Kind) (*OperatorType, error) {
	vs, err := r.Variants(name)
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if v.Kind == kind {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%w %q of kind %v (it is a %v)", ErrUnknownType, name, kind, vs[0].Kind)
}

// Variants returns every registration of a name (one, or a source and a
// sink), sources first.
func (r *Registry) Variants(name string) ([]*OperatorType, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if vs := r.types[name]; len(vs) > 0 {
		return append([]*OperatorType(nil), vs...), nil
	}
	return nil, fmt.Errorf("%w %q (known types: %s)", ErrUnknownType, name, strings.Join(r.namesLocked(), ", "))
}

// Names returns the registered type names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.namesLocked()
}

func (r *Registry) namesLocked() []string {
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Types returns all registered types sorted by name, sources before sinks
// of a shared name.
func (r *Registry) Types() []*OperatorType {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*OperatorType
	for _, n := range r.namesLocked() {
		out = append(out, r.types[n]...)
	}
	return out
}

// Default is the registry the stock binaries use; built-in operators register
// here from their packages' init functions.
var Default = NewRegistry()

// Config is an operator's configuration after validation and defaults: every
// field of the schema is present with a value of its declared Go type
// (string, int64, float64, bool, time.Duration, []string, map[string]string).
type Config map[string]any

func (c Config) String(name string) string {
	v, _ := c[name].(string)
	return v
}

func (c Config) Int(name string) int64 {
	v, _ := c[name].(int64)
	return v
}

func (c Config) Float(name string) float64 {
	v, _ := c[name].(float64)
	return v
}

func (c Config) Bool(name string) bool {
	v, _ := c[name].(bool)
	return v
}

func (c Config) Duration(name string) time.Duration {
	v, _ := c[name].(time.Duration)
	return v
}

func (c Config) StringList(name string) []string {
	v, _ := c[name].([]string)
	return v
}

func (c Config) StringMap(name string) map[string]string {
	v, _ := c[name].(map[string]string)
	return v
}
