package taskmanager

import (
	"context"

	"github.com/flowrt/flow/internal/opinfo"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// ListOperatorTypes lists the operator types this TaskManager can run. It
// only reads the registry (fixed at New), so it takes no lock and is not
// fenced.
func (tm *TaskManager) ListOperatorTypes(context.Context, *clusterv1.ListOperatorTypesRequest) (*clusterv1.ListOperatorTypesResponse, error) {
	return &clusterv1.ListOperatorTypesResponse{Types: opinfo.Describe(tm.opts.Registry)}, nil
}
