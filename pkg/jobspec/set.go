package jobspec

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/flowrt/flow/pkg/api"
)

// setContext says which keys are valid at a level of the spec tree.
type setContext int

const (
	ctxTop setContext = iota
	ctxOperator
	ctxWatermarks
	ctxConfig
	ctxStateBackend
	ctxCheckpoints
	ctxRestart
	ctxFree // inside a config map field: any key
	ctxLeaf
)

// applySets applies --set overrides to the YAML tree. A path must name
// something the spec format knows (creating missing keys is fine);
// operators are addressed by id: operators.<id>.<key>.
func (p *parser) applySets(root *yaml.Node, sets []string) {
	for _, s := range sets {
		p.applySet(resolve(root), s)
	}
}

func (p *parser) setErr(s, format string, args ...any) {
	n := &yaml.Node{}
	p.origin[n] = s
	p.errAt(n, format, args...)
}

func (p *parser) applySet(root *yaml.Node, s string) {
	key, raw, ok := strings.Cut(s, "=")
	if !ok {
		p.setErr(s, "want path=value, such as parallelism=4 or operators.src.config.count=10")
		return
	}
	path := strings.Split(strings.TrimSpace(key), ".")
	for _, seg := range path {
		if seg == "" {
			p.setErr(s, "path %q has an empty segment: write keys separated by single dots", key)
			return
		}
	}
	val, err := parseSetValue(raw)
	if err != nil {
		p.setErr(s, "value %q is not valid YAML: %v: quote it", raw, err)
		return
	}
	p.markOrigin(val, s)
	if root.Kind != yaml.MappingNode {
		return // reported by the parser
	}
	// Check the whole path first so a bad override changes nothing.
	if p.walkSet(root, s, key, path, val, true) {
		p.walkSet(root, s, key, path, val, false)
	}
}

// walkSet follows path from root and sets the value at its end; with dry it
// only checks the path. It reports problems and returns false on one.
func (p *parser) walkSet(root *yaml.Node, s, key string, path []string, val *yaml.Node, dry bool) bool {
	fail := func(format string, args ...any) bool {
		p.setErr(s, format, args...)
		return false
	}

	cur := root
	ctx := ctxTop
	var known []string
	var opType *api.OperatorType
	for i := 0; i < len(path); i++ {
		seg := path[i]
		last := i == len(path)-1
		at := strings.Join(path[:i+1], ".")
		if cur.Kind != yaml.MappingNode {
			return fail("%s names nothing: %s is %s, not a mapping", at, strings.Join(path[:i], "."), kindName(cur))
		}
		switch ctx {
		case ctxTop:
			known = topKeys
		case ctxOperator:
			known = operatorKeys
		case ctxWatermarks:
			known = watermarkKeys
		case ctxConfig:
			known = nil
			if opType != nil {
				for _, f := range opType.Fields {
					known = append(known, f.Name)
				}
			}
		case ctxStateBackend:
			known = stateBackendKeys
		case ctxCheckpoints:
			known = checkpointKeys
		case ctxRestart:
			known = restartKeys
		case ctxFree:
			known = nil
		case ctxLeaf:
			return fail("%s names nothing: %s takes a plain value", at, strings.Join(path[:i], "."))
		}
		if ctx == ctxTop && seg == "operators" {
			if last {
				return fail("operators cannot be replaced with --set: address one operator as operators.<id>.<key>")
			}
			op := findOperator(cur, path[i+1])
			if op == nil {
				ids := operatorIDs(cur)
				return fail("operators.%s names nothing: there is no operator with id %q%s (ids: %s)", path[i+1], path[i+1], didYouMean(path[i+1], ids), strings.Join(ids, ", "))
			}
			if i+1 == len(path)-1 {
				return fail("an operator cannot be replaced with --set: set one of its keys, such as operators.%s.parallelism", path[i+1])
			}
			cur, ctx = op, ctxOperator
			opType = nil
			if t := mappingValue(op, "type"); t != nil && t.Kind == yaml.ScalarNode {
				opType, _ = p.reg.Resolve(t.Value, mappingValue(op, "inputs") != nil)
			}
			i++
			continue
		}
		idx := -1
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if resolve(cur.Content[j]).Value == seg {
				idx = j
			}
		}
		if idx < 0 && known != nil && !contains(known, seg) {
			return fail("%s names nothing: unknown key %q%s (known keys: %s)", at, seg, didYouMean(seg, known), strings.Join(sorted(known), ", "))
		}
		// What lies below seg.
		next := ctxLeaf
		switch {
		case ctx == ctxTop && seg == "stateBackend":
			next = ctxStateBackend
		case ctx == ctxTop && seg == "checkpoints":
			next = ctxCheckpoints
		case ctx == ctxTop && seg == "restart":
			next = ctxRestart
		case ctx == ctxOperator && seg == "watermarks":
			next = ctxWatermarks
		case ctx == ctxOperator && seg == "config":
			next = ctxConfig
		case ctx == ctxConfig:
			if opType == nil {
				next = ctxFree
			} else if f, ok := opType.Field(seg); ok && f.Type == api.TypeStringMap {
				next = ctxFree
			}
		}
		if last {
			if dry {
				return true
			}
			if idx >= 0 {
				cur.Content[idx+1] = val
			} else {
				k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg}
				p.origin[k] = s
				cur.Content = append(cur.Content, k, val)
			}
			return true
		}
		var child *yaml.Node
		if idx >= 0 {
			child = resolve(cur.Content[idx+1])
			if isNull(child) {
				child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				if !dry {
					p.origin[child] = s
					cur.Content[idx+1] = child
				}
			}
		} else {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg}
			child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if !dry {
				p.origin[k], p.origin[child] = s, s
				cur.Content = append(cur.Content, k, child)
			}
		}
		cur = child
		ctx = next
	}
	return true
}

func parseSetValue(raw string) (*yaml.Node, error) {
	if strings.TrimSpace(raw) == "" {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: raw}, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: ""}, nil
	}
	return doc.Content[0], nil
}

func (p *parser) markOrigin(n *yaml.Node, s string) {
	p.origin[n] = s
	for _, c := range n.Content {
		p.markOrigin(c, s)
	}
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	m = resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for j := 0; j+1 < len(m.Content); j += 2 {
		if resolve(m.Content[j]).Value == key {
			return resolve(m.Content[j+1])
		}
	}
	return nil
}

func findOperator(top *yaml.Node, id string) *yaml.Node {
	seq := mappingValue(top, "operators")
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return nil
	}
	for _, op := range seq.Content {
		op = resolve(op)
		if v := mappingValue(op, "id"); v != nil && v.Kind == yaml.ScalarNode && v.Value == id {
			return op
		}
	}
	return nil
}

func operatorIDs(top *yaml.Node) []string {
	var ids []string
	seq := mappingValue(top, "operators")
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return nil
	}
	for _, op := range seq.Content {
		if v := mappingValue(resolve(op), "id"); v != nil && v.Kind == yaml.ScalarNode {
			ids = append(ids, v.Value)
		}
	}
	return ids
}
