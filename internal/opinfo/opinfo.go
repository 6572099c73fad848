// Package opinfo describes a registry's operator types as the
// JobManagerService's OperatorTypeInfo messages: what the JobManager answers
// to ListOperatorTypes and what flowctl renders, for a cluster's registry or
// its own.
package opinfo

import (
	"encoding/json"
	"fmt"

	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// Describe returns every type of reg, in reg.Types order.
func Describe(reg *api.Registry) []*clusterv1.OperatorTypeInfo {
	types := reg.Types()
	out := make([]*clusterv1.OperatorTypeInfo, len(types))
	for i, t := range types {
		out[i] = Type(t)
	}
	return out
}

// Type describes one operator type.
func Type(t *api.OperatorType) *clusterv1.OperatorTypeInfo {
	ti := &clusterv1.OperatorTypeInfo{Name: t.Name, Kind: t.Kind.String(), Keyed: t.Keyed, Doc: t.Doc, Example: t.Example,
		SideOutputs: t.SideOutputs}
	for _, f := range t.Fields {
		ti.Fields = append(ti.Fields, &clusterv1.OperatorFieldInfo{
			Name: f.Name, Type: string(f.Type), Required: f.Required,
			DefaultJson: defaultJSON(f.Default), Enum: f.Enum, Doc: f.Doc,
		})
	}
	return ti
}

// defaultJSON renders a field default (durations, and other Stringers, as
// their strings); "" when there is none.
func defaultJSON(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(fmt.Stringer); ok {
		v = s.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(fmt.Sprint(v))
	}
	return string(b)
}
