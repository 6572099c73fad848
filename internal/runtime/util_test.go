package runtime

import (
	"fmt"

	"github.com/flowrt/flow/pkg/connectors/file"
)

func fmtSscanf(name string, sub, n *int) (int, error) {
	p, ok := file.ParsePartName(name)
	if !ok || !p.Committed {
		return 0, fmt.Errorf("not a part file: %s", name)
	}
	*sub, *n = p.Subtask, p.N
	return 2, nil
}
