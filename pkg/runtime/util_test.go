package runtime

import "fmt"

func fmtSscanf(name string, sub, n *int) (int, error) {
	var rest string
	c, err := fmt.Sscanf(name, "part-%d-%d.%s", sub, n, &rest)
	if err == nil && rest != "jsonl" {
		return c, fmt.Errorf("not a part file: %s", name)
	}
	return c, err
}
