package jobspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/jobgraph"
	"github.com/flowrt/flow/pkg/keygroup"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// Defaults of the job-level settings.
const (
	DefaultParallelism        = 1
	DefaultMaxParallelism     = 128
	DefaultWatermarkInterval  = 200 * time.Millisecond
	OnErrorFail               = "fail"
	OnErrorSkip               = "skip"
	PartitioningForwardName   = "forward"
	PartitioningRebalanceName = "rebalance"
	PartitioningBroadcastName = "broadcast"
)

var (
	topKeys       = []string{"name", "parallelism", "maxParallelism", "operators", "stateBackend", "checkpoints", "restart"}
	operatorKeys  = []string{"id", "type", "uid", "inputs", "keyBy", "partitioning", "parallelism", "onError", "watermarks", "config"}
	watermarkKeys = []string{"timestamp", "outOfOrderness", "interval", "idleTimeout"}
	idRE          = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// LoadFile reads and parses the spec at path; see Parse.
func LoadFile(path string, reg *api.Registry, sets []string) (*jobgraphv1.JobGraph, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read job spec: %w", err)
	}
	return Parse(data, path, reg, sets)
}

// Parse builds a JobGraph from a YAML job spec, validating every operator
// against reg. sets are "path=value" overrides applied before validation
// (see the package doc). On failure the error is an *Errors listing every
// problem found, each located in filename.
func Parse(data []byte, filename string, reg *api.Registry, sets []string) (*jobgraphv1.JobGraph, error) {
	p := &parser{file: filename, reg: reg, origin: map[*yaml.Node]string{}}
	g := p.parse(data, sets)
	if len(p.errs.List) > 0 {
		p.errs.sort()
		return nil, &p.errs
	}
	return g, nil
}

type parser struct {
	file   string
	reg    *api.Registry
	errs   Errors
	origin map[*yaml.Node]string // nodes created by --set -> the override text
}

func (p *parser) errAt(n *yaml.Node, format string, args ...any) {
	e := &Error{File: p.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		if s, ok := p.origin[n]; ok {
			e.Set = s
		} else {
			e.Line, e.Column = n.Line, n.Column
		}
	}
	p.errs.List = append(p.errs.List, e)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode reads the single YAML document.
func (p *parser) decode(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errs.List = append(p.errs.List, &Error{File: p.file, Msg: "the job spec is empty: write at least name and operators (see docs/reference/job-spec.md)"})
			return nil
		}
		msg := err.Error()
		e := &Error{File: p.file}
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			msg = m[2]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		e.Msg = "malformed YAML: " + msg + ": fix the syntax (indent with spaces, quote values containing ': ' or '#')"
		p.errs.List = append(p.errs.List, e)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errAt(&extra, "the file holds more than one YAML document: keep one job per file")
	}
	if len(doc.Content) == 0 {
		p.errs.List = append(p.errs.List, &Error{File: p.file, Msg: "the job spec is empty: write at least name and operators (see docs/reference/job-spec.md)"})
		return nil
	}
	return doc.Content[0]
}

// operator is one parsed entry of the operators list.
type operator struct {
	node     *yaml.Node
	id       string
	idNode   *yaml.Node
	typ      *api.OperatorType
	typeNode *yaml.Node
	uid      string
	uidNode  *yaml.Node
	inputs   []string
	inNodes  []*yaml.Node
	// inKeyBy and inPart: per-input keyBy and partitioning of inputs given
	// as {from, keyBy, partitioning} ("" / UNSPECIFIED: the operator's).
	inKeyBy []string
	inPart  []jobgraphv1.Partitioning
	// inSide: the side output each input reads (`from: op.late`; "": the
	// main output); inputs holds the operator ids.
	inSide    []string
	inputsKey *yaml.Node
	keyBy     string
	keyByNode *yaml.Node
	part      jobgraphv1.Partitioning
	partNode  *yaml.Node
	par       int
	parNode   *yaml.Node
	onError   string
	wm        *jobgraphv1.WatermarkStrategy
	config    []byte
}

func (p *parser) parse(data []byte, sets []string) *jobgraphv1.JobGraph {
	root := p.decode(data)
	if root == nil {
		return nil
	}
	p.applySets(root, sets)
	top, ok := p.mapping(root, "job spec", topKeys)
	if !ok {
		return nil
	}
	g := &jobgraphv1.JobGraph{Spec: string(data)}
	if e, ok := top["name"]; ok {
		if s, ok := p.str(e, "name"); ok {
			if strings.TrimSpace(s) == "" {
				p.errAt(e.val, "name: is empty: give the job a name")
			}
			g.Name = s
		}
	} else {
		p.errAt(root, "name is required: add name: <job name> at the top")
	}

	maxPar := DefaultMaxParallelism
	if e, ok := top["maxParallelism"]; ok {
		if v, ok := p.integer(e, "maxParallelism"); ok {
			if err := keygroup.Validate(1, int(min(max(v, -1), 1<<30))); err != nil {
				p.errAt(e.val, "%v", err)
			} else {
				maxPar = int(v)
			}
		}
	}
	par := DefaultParallelism
	if e, ok := top["parallelism"]; ok {
		if v, ok := p.integer(e, "parallelism"); ok {
			if err := keygroup.Validate(int(min(max(v, -1), 1<<30)), maxPar); err != nil {
				p.errAt(e.val, "%v", err)
			} else {
				par = int(v)
			}
		}
	}
	g.Parallelism, g.MaxParallelism = int32(par), int32(maxPar)

	var ops []*operator
	if e, ok := top["operators"]; ok {
		ops = p.operators(e, par, maxPar)
	} else {
		p.errAt(root, "operators is required: add a list of operators (a source, then operators and sinks with inputs)")
	}

	backend := p.stateBackend(top["stateBackend"].val)
	ckpt := p.checkpoints(top["checkpoints"].val, backend)
	rst := p.restart(top["restart"].val, ckpt.Interval > 0)
	p.transactionTimeouts(ops, ckpt)

	if len(p.errs.List) > 0 {
		return nil
	}
	for _, op := range ops {
		kind := map[api.Kind]jobgraphv1.VertexKind{
			api.KindSource: jobgraphv1.VertexKind_VERTEX_KIND_SOURCE, api.KindOperator: jobgraphv1.VertexKind_VERTEX_KIND_OPERATOR,
			api.KindSink: jobgraphv1.VertexKind_VERTEX_KIND_SINK,
		}[op.typ.Kind]
		g.Vertices = append(g.Vertices, &jobgraphv1.Vertex{
			Id: op.id, Type: op.typ.Name, Uid: op.uid, Kind: kind, Parallelism: int32(op.par),
			Config: op.config, KeyBy: op.vertexKeyBy(), OnError: op.onError, Watermarks: op.wm,
		})
	}
	byID := map[string]*operator{}
	for _, op := range ops {
		byID[op.id] = op
	}
	for _, op := range ops {
		for i, in := range op.inputs {
			e := &jobgraphv1.Edge{Source: in, Target: op.id, Partitioning: edgePartitioning(byID[in], op, i)}
			if op.inKeyBy[i] != "" && op.inKeyBy[i] != op.vertexKeyBy() {
				e.KeyBy = op.inKeyBy[i]
			}
			if op.typ.Inputs == 2 {
				e.Input = int32(i)
			}
			e.SideOutput = op.inSide[i]
			g.Edges = append(g.Edges, e)
		}
	}
	g.StateBackendConfig, g.CheckpointConfig, g.RestartConfig = backend.config(), ckpt.config(), rst.config()
	if _, err := jobgraph.BuildPlan(g); err != nil {
		p.errAt(top["operators"].key, "%v", err)
		return nil
	}
	checkJob(g, p.reg, func(id string, err error) { p.errAt(byID[id].typeNode, "operator %q: %v", id, err) })
	if len(p.errs.List) > 0 {
		return nil
	}
	return g
}

// transactionTimeouts refuses a transactional sink whose transactions
// would time out before the checkpoint that commits them can complete: a
// config field "transactionTimeout" (of an operator whose
// "deliveryGuarantee", if it has one, is exactly_once) must exceed
// checkpoints.interval + checkpoints.timeout.
func (p *parser) transactionTimeouts(ops []*operator, ckpt Checkpoints) {
	if ckpt.Interval <= 0 {
		return
	}
	for _, op := range ops {
		if op == nil || op.typ == nil || op.config == nil {
			continue
		}
		if _, ok := op.typ.Field("transactionTimeout"); !ok {
			continue
		}
		cfg, err := op.typ.DecodeConfigJSON(op.config)
		if err != nil {
			continue
		}
		if _, ok := op.typ.Field("deliveryGuarantee"); ok && cfg.String("deliveryGuarantee") != "exactly_once" {
			continue
		}
		if tt, need := cfg.Duration("transactionTimeout"), ckpt.Interval+ckpt.Timeout; tt <= need {
			p.errAt(op.typeNode, "operator %q: config field \"transactionTimeout\": %s is not longer than checkpoints.interval + checkpoints.timeout (%s + %s): a transaction could time out before its checkpoint completes; raise transactionTimeout or lower checkpoints.timeout",
				op.id, tt, ckpt.Interval, ckpt.Timeout)
		}
	}
}

// vertexKeyBy is the vertex's key expression: the operator's keyBy, else
// the first per-input keyBy (a keyed two-input operator whose inputs have
// their own keys).
func (op *operator) vertexKeyBy() string {
	if op.keyBy != "" {
		return op.keyBy
	}
	for _, k := range op.inKeyBy {
		if k != "" {
			return k
		}
	}
	return ""
}

// edgePartitioning applies the partitioning rules to input i of dst: a
// per-input keyBy or partitioning wins over the operator's; keyBy makes
// HASH; an explicit partitioning wins; otherwise FORWARD when the target has
// a single input with its parallelism, else REBALANCE.
func edgePartitioning(src, dst *operator, i int) jobgraphv1.Partitioning {
	switch {
	case dst.inKeyBy[i] != "":
		return jobgraphv1.Partitioning_PARTITIONING_HASH
	case dst.inPart[i] != jobgraphv1.Partitioning_PARTITIONING_UNSPECIFIED:
		return dst.inPart[i]
	case dst.keyBy != "":
		return jobgraphv1.Partitioning_PARTITIONING_HASH
	case dst.part != jobgraphv1.Partitioning_PARTITIONING_UNSPECIFIED:
		return dst.part
	case len(dst.inputs) == 1 && src.par == dst.par:
		return jobgraphv1.Partitioning_PARTITIONING_FORWARD
	}
	return jobgraphv1.Partitioning_PARTITIONING_REBALANCE
}

func (p *parser) watermarks(n *yaml.Node, what string) *jobgraphv1.WatermarkStrategy {
	m, ok := p.mapping(n, what+": watermarks", watermarkKeys)
	if !ok {
		return nil
	}
	wm := &jobgraphv1.WatermarkStrategy{IntervalMs: DefaultWatermarkInterval.Milliseconds()}
	if e, ok := m["timestamp"]; ok {
		if s, ok := p.str(e, what+": watermarks.timestamp"); ok {
			if _, err := expression.Compile(s); err != nil {
				p.errAt(e.val, "%s: watermarks.timestamp: %s", what, firstLine(err.Error()))
			}
			wm.Timestamp = s
		}
	}
	if e, ok := m["outOfOrderness"]; ok {
		if d, ok := p.duration(e, what+": watermarks.outOfOrderness"); ok {
			wm.OutOfOrdernessMs = d.Milliseconds()
		}
	}
	if e, ok := m["interval"]; ok {
		if d, ok := p.duration(e, what+": watermarks.interval"); ok {
			if d < time.Millisecond {
				p.errAt(e.val, "%s: watermarks.interval: must be at least 1ms, such as 200ms", what)
			} else {
				wm.IntervalMs = d.Milliseconds()
			}
		}
	}
	if e, ok := m["idleTimeout"]; ok {
		if d, ok := p.duration(e, what+": watermarks.idleTimeout"); ok {
			wm.IdleTimeoutMs = d.Milliseconds()
		}
	}
	return wm
}

// config validates an operator's config with its type's schema and returns
// it as JSON.
func (p *parser) config(e entry, op *operator, what string) []byte {
	raw := map[string]any{}
	var fields map[string]entry
	if e.val != nil {
		var ok bool
		fields, ok = p.mapping(e.val, what+": config", nil)
		if !ok {
			return nil
		}
		for k, fe := range fields {
			var v any
			if err := fe.val.Decode(&v); err != nil {
				p.errAt(fe.val, "%s: config field %q: %v", what, k, err)
				return nil
			}
			raw[k] = v
		}
	}
	cfg, err := op.typ.DecodeConfig(raw)
	if err != nil {
		for _, fe := range api.FieldErrors(err) {
			at := op.typeNode
			if e.key != nil {
				at = e.key
			}
			if f, ok := fields[fe.Field]; ok {
				at = f.val
				if errors.Is(fe, api.ErrUnknownField) {
					at = f.key
				}
			}
			p.errAt(at, "%s: config field %q: %v", what, fe.Field, fe.Err)
		}
		if len(api.FieldErrors(err)) == 0 {
			p.errAt(op.typeNode, "%s: config: %v", what, err)
		}
		return nil
	}
	b, err := op.typ.EncodeConfig(cfg)
	if err != nil {
		p.errAt(op.typeNode, "%s: config: %v", what, err)
		return nil
	}
	// Build the operator from the stored bytes exactly as a TaskManager
	// deploys it, so a config the spec accepts cannot fail at deploy.
	if _, err := op.typ.Instantiate(b); err != nil {
		at := op.typeNode
		if e.key != nil {
			at = e.key
		}
		p.errAt(at, "%s: config: %v", what, err)
		return nil
	}
	return b
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}
