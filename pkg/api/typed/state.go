package typed

import (
	"fmt"
	"reflect"
	"time"

	"github.com/flowrt/flow/pkg/api"
)

// State declarations for Open: typed handles (api.ValueState, ListState,
// MapState) over the keyed state of the operator, with a default codec
// chosen from the type (the order-preserving api codecs for int64, int,
// uint64, float64, bool, string and time.Time; versioned api.JSON
// otherwise) and options. Keep a state's name and codec across versions of
// the job: savepoints find state by name and refuse another codec.

// StateOption configures a state declaration.
type StateOption func(*stateOpts)

type stateOpts struct {
	ttl   *api.TTLConfig
	codec any
	key   any
	def   any
}

// TTL expires each value (list element, map entry) ttl after it was
// written; WithTTL gives the full api.TTLConfig.
func TTL(ttl time.Duration) StateOption {
	return func(o *stateOpts) { o.ttl = &api.TTLConfig{TTL: ttl} }
}

// WithTTL sets the state's TTL configuration.
func WithTTL(c api.TTLConfig) StateOption { return func(o *stateOpts) { o.ttl = &c } }

// WithCodec sets the codec of the values (for maps: of the map values).
func WithCodec[T any](c api.Codec[T]) StateOption { return func(o *stateOpts) { o.codec = c } }

// WithKeyCodec sets the codec of a map state's keys.
func WithKeyCodec[K any](c api.Codec[K]) StateOption { return func(o *stateOpts) { o.key = c } }

// WithDefault sets what a value state's Value returns when it holds nothing.
func WithDefault[T any](v T) StateOption { return func(o *stateOpts) { o.def = v } }

func options(opts []StateOption) stateOpts {
	var o stateOpts
	for _, f := range opts {
		f(&o)
	}
	return o
}

func codecOf[T any](name, what string, c any) (api.Codec[T], error) {
	if c == nil {
		return DefaultStateCodec[T](), nil
	}
	if x, ok := c.(api.Codec[T]); ok {
		return x, nil
	}
	return nil, fmt.Errorf("state %q: the %s codec is a %T, not an api.Codec[%v]", name, what, c, reflect.TypeFor[T]())
}

// DefaultStateCodec is the codec state declarations use for T.
func DefaultStateCodec[T any]() api.Codec[T] {
	var c any
	switch any(*new(T)).(type) {
	case int64:
		c = api.Int64Codec()
	case int:
		c = api.IntCodec()
	case uint64:
		c = api.Uint64Codec()
	case float64:
		c = api.Float64Codec()
	case bool:
		c = api.BoolCodec()
	case string:
		c = api.StringCodec()
	case []byte:
		c = api.BytesCodec()
	case time.Time:
		c = api.TimeCodec()
	default:
		return api.JSON[T]()
	}
	return c.(api.Codec[T])
}

// Value declares a value state of T.
func Value[T any](ctx api.Context, name string, opts ...StateOption) (*api.ValueState[T], error) {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return nil, err
	}
	o := options(opts)
	c, err := codecOf[T](name, "value", o.codec)
	if err != nil {
		return nil, err
	}
	d := api.ValueStateDescriptor[T]{Name: name, Codec: c, TTL: o.ttl}
	if o.def != nil {
		v, ok := o.def.(T)
		if !ok {
			return nil, fmt.Errorf("state %q: the default is a %T, not a %v", name, o.def, reflect.TypeFor[T]())
		}
		d.Default = v
	}
	return api.GetValueState(store, d)
}

// List declares a list state of T.
func List[T any](ctx api.Context, name string, opts ...StateOption) (*api.ListState[T], error) {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return nil, err
	}
	o := options(opts)
	c, err := codecOf[T](name, "element", o.codec)
	if err != nil {
		return nil, err
	}
	return api.GetListState(store, api.ListStateDescriptor[T]{Name: name, Codec: c, TTL: o.ttl})
}

// Map declares a map state from K to V.
func Map[K, V any](ctx api.Context, name string, opts ...StateOption) (*api.MapState[K, V], error) {
	store, err := api.KeyedStateStoreOf(ctx)
	if err != nil {
		return nil, err
	}
	o := options(opts)
	kc, err := codecOf[K](name, "key", o.key)
	if err != nil {
		return nil, err
	}
	vc, err := codecOf[V](name, "value", o.codec)
	if err != nil {
		return nil, err
	}
	return api.GetMapState(store, api.MapStateDescriptor[K, V]{Name: name, KeyCodec: kc, ValueCodec: vc, TTL: o.ttl})
}
