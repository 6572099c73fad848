PROTOS := $(shell find proto -name '*.proto')

.PHONY: build test tools proto proto-check vet bench

build:
	go build -o bin/ ./cmd/...

# The test command of the README and of CI: tools, generated-code check,
# vet, then every test with the race detector.
test: tools proto-check vet
	go test -race -count=1 -timeout 20m ./...

VERSITYGW_VERSION := v1.8.0
GOBIN := $(shell go env GOPATH)/bin

# Installs what the tests need that Go does not fetch by itself: protoc
# (Debian protobuf-compiler), kcat (Debian kcat, the outside Kafka client
# of the Kafka end-to-end tests) and versitygw, the S3 server the
# checkpoint storage tests start on 127.0.0.1.
tools:
	@command -v protoc >/dev/null 2>&1 || { \
		echo "installing protoc (Debian protobuf-compiler)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y protobuf-compiler >/dev/null; }
	@command -v kcat >/dev/null 2>&1 || { \
		echo "installing kcat (Debian kcat)"; \
		$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get install -y kcat >/dev/null; }
	@[ -x "$(GOBIN)/versitygw" ] || { \
		echo "installing versitygw $(VERSITYGW_VERSION)"; \
		go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); }

vet:
	go vet ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

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
