// Package dockertest runs the docker compose cluster of deploy/ for real:
// images built offline from deploy/image, flowctl on the host, container
// kills, network cuts, a JobManager restart and a down/up cycle, with the
// output of keyed-count jobs checked for exactly-once.
//
// The tests are behind the "docker" build tag, so `go test ./...` on a
// machine without Docker compiles nothing here. Run them with
//
//	make test-docker
//	go test -tags docker -count=1 -v ./deploy/dockertest/
//
// They need a Docker engine, the Compose tool (`docker compose` or
// docker-compose 1.29+), Go and a static busybox (see deploy/image/stage.sh);
// no container registry.
package dockertest
