// Package statee2e holds end-to-end tests of keyed state: jobs from the
// committed examples run on an in-process mini cluster (internal/minicluster)
// with the heap and Pebble state backends, and their outputs are compared.
// It has no non-test code.
package statee2e
