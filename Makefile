PROTOS := $(shell find proto -name '*.proto')

.PHONY: build test test-load test-alerts test-examples tools proto proto-check vet bench bench-goka nexmark-recovery docker-images test-docker test-kubernetes nexmark

build:
	go build -o bin/ ./cmd/...

# The test command of the README and of CI: tools, generated-code check,
# vet, then every test with the race detector.
test: tools proto-check vet
	go test -race -count=1 -timeout 20m ./...

# The Go SDK example module (examples/sdk, its own go.mod): vet and every
# test with the race detector, among them its end-to-end tests on real
# processes of its own cluster binaries.
test-examples:
	cd examples/sdk && go vet ./... && go test -race -count=1 -timeout 10m ./...

# The JobManager load test (256 subtasks over 4 TaskManagers, 2 s heartbeat
# timeout) runs on its own, so that other packages' tests do not share the
# cores with it.
test-load:
	go test -tags load -count=1 -timeout 10m -run TestLargeJob -v ./internal/e2e/

# Prometheus alerting rules: syntax and promtool's unit tests (Debian's
# prometheus package has promtool).
test-alerts:
	@command -v promtool >/dev/null 2>&1 || { \
		echo "installing promtool (Debian prometheus)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y prometheus >/dev/null; }
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts_test.yml

VERSITYGW_VERSION := v1.8.0
GOBIN := $(shell go env GOPATH)/bin

# Installs what the tests need that Go does not fetch by itself: protoc
# (Debian protobuf-compiler), prometheus (the dashboard-query test), kcat
# (the outside Kafka client of the Kafka end-to-end tests), chromium (the
# web UI test) and versitygw, the S3 server the checkpoint storage tests
# start on 127.0.0.1.
tools:
	@command -v protoc >/dev/null 2>&1 || { \
		echo "installing protoc (Debian protobuf-compiler)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y protobuf-compiler >/dev/null; }
	@command -v prometheus >/dev/null 2>&1 || { \
		echo "installing prometheus and promtool (Debian prometheus)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y prometheus >/dev/null; }
	@command -v kcat >/dev/null 2>&1 || { \
		echo "installing kcat (Debian kcat)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y kcat >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (Debian chromium)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y chromium >/dev/null; }
	@[ -x "$(GOBIN)/versitygw" ] || { \
		echo "installing versitygw $(VERSITYGW_VERSION)"; \
		go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); }

vet:
	go vet ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

# Nexmark queries of examples/nexmark at parallelism = cores, events/s per
# core against Flink's published per-core figures (docs/performance.md).
NEXMARK_EVENTS ?= 2000000
nexmark:
	go test ./examples/nexmark -run '^$$' -bench Nexmark -benchtime 1x -timeout 30m -nexmark.events $(NEXMARK_EVENTS)

# Recovery of Nexmark q5, q7 and q20 on real processes: time from a
# TaskManager SIGKILL to records flowing again (docs/performance.md).
nexmark-recovery:
	go test -tags nexmark ./internal/e2e -run NexmarkRecovery -v -count=1 -timeout 10m

# Flow against lovoo/goka on the same keyed count over Kafka
# (docs/performance.md); bench/goka is a module of its own, so Goka is not a
# dependency of Flow and `go test ./...` does not enter it.
GOKA_ROUNDS ?= 3
bench-goka:
	cd bench/goka && go test -run TestKeyedCountAgree -count=1 . && \
		go test -run '^$$' -bench KeyedCount -benchtime $(GOKA_ROUNDS)x -timeout 30m .

# Regenerates the Go code beside each .proto file. Needs protoc (Debian:
# protobuf-compiler); the Go plugins are pinned as go tool dependencies.
proto:
	protoc -I proto \
		--plugin=protoc-gen-go=$$(go tool -n protoc-gen-go) \
		--plugin=protoc-gen-go-grpc=$$(go tool -n protoc-gen-go-grpc) \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		$(PROTOS)

# Fails when the committed generated code differs from what make proto writes.
proto-check: tools proto
	git diff --exit-code -- proto || (echo "generated code in proto/ is stale: run 'make proto' and commit" >&2; exit 1)

# The offline images of the compose cluster (deploy/image: FROM scratch,
# host-built static binaries; no registry needed). Needs Docker and a static
# busybox (Debian busybox-static).
docker-images:
	deploy/image/stage.sh
	docker build -t flow:dev deploy/image
	docker build -f deploy/image/Dockerfile.s3 -t flow-s3:dev deploy/image

# The compose cluster run for real (deploy/dockertest, build tag docker):
# offline image build, container kill, scale-out, network cut, JobManager
# restart, down/up, exactly-once output. Needs a Docker engine and the
# Compose tool; not part of `make test`.
test-docker:
	go vet -tags docker ./deploy/dockertest/
	go test -tags docker -race -count=1 -v -timeout 15m ./deploy/dockertest/

# The Kubernetes manifests, validated in their own module (deploy/kubernetes
# has its own go.mod, so k8s.io stays out of Flow's dependencies).
test-kubernetes:
	cd deploy/kubernetes && gofmt -l . | (! grep .) && go vet ./... && go test -race -count=1 ./...
