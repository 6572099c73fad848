// Package jobs is this module's operator registry: Flow's built-ins plus
// the module's own types. The cluster binaries in cmd/ and the tests use it.
package jobs

import (
	"sync"

	"github.com/flowrt/flow/examples/sdk/dedup"
	"github.com/flowrt/flow/examples/sdk/enrich"
	"github.com/flowrt/flow/examples/sdk/fraud"
	"github.com/flowrt/flow/examples/sdk/sessions"
	"github.com/flowrt/flow/pkg/api"
	_ "github.com/flowrt/flow/pkg/builtin" // the built-in operator library
)

var (
	once sync.Once
	reg  *api.Registry
)

// Registry returns the registry: the built-ins, example-dedup, example-fraud and example-sessions.
func Registry() *api.Registry {
	once.Do(func() {
		reg = api.Default.Clone()
		reg.MustRegister(dedup.Type())
		reg.MustRegister(enrich.Type())
		reg.MustRegister(enrich.RulesType())
		reg.MustRegister(fraud.Type())
		reg.MustRegister(sessions.Type())
	})
	return reg
}
