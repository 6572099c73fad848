PROTOS := $(shell find proto -name '*.proto')

.PHONY: build test proto proto-check vet

build:
	go build -o bin/ ./cmd/...

test:
	go test ./...

vet:
	go vet ./...

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
proto-check: proto
	git diff --exit-code -- proto || (echo "generated code in proto/ is stale: run 'make proto' and commit" >&2; exit 1)
