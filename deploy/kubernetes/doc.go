// Package kubernetes holds the test that validates Flow's Kubernetes
// manifests (the YAML files beside it) by strict decoding into the
// k8s.io/api types; see manifests_test.go.
package kubernetes
