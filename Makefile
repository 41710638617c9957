# km: Kubernetes on Mesos. `make test` is the project's test command (CI runs it
# through .ci/run); `make build` builds bin/km.

GO ?= go
KUBE_VERSION := v1.36.3
KM_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILD_DATE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

# Version stamping: kubectl refuses a server that reports v0.0.0, and `km
# version` prints these.
VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
LDFLAGS := -X github.com/k8sm/k8sm/internal/version.KM=$(KM_VERSION) \
	$(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=36 \
	-X $(p).gitCommit=km-$(KM_VERSION) -X $(p).gitTreeState=clean -X $(p).buildDate=$(BUILD_DATE))

.PHONY: all build test unit proto fuzz vet fmt bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/km ./cmd/km

# Everything: vet, the unit and integration tests (the integration and e2e
# tests use bin/km, built first).
test: build vet
	KM_BINARY=$(CURDIR)/bin/km $(GO) test -count=1 -timeout 60m ./...

unit:
	$(GO) test -count=1 -short ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w cmd internal test

# Short fuzzing of every network-input parser; FUZZTIME=10m for a longer run.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./internal/mesos/recordio -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/codec -run '^$$' -fuzz FuzzDecodeJSON -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/codec -run '^$$' -fuzz FuzzDecodeProtobuf -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/resources -run '^$$' -fuzz 'FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/resources -run '^$$' -fuzz FuzzMath -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/schedclient -run '^$$' -fuzz FuzzDecodeEvent -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/schedclient -run '^$$' -fuzz FuzzRedirect -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/execclient -run '^$$' -fuzz FuzzConfigFromEnv -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/execclient -run '^$$' -fuzz FuzzDuration -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/execclient -run '^$$' -fuzz FuzzEventStream -fuzztime $(FUZZTIME)
	$(GO) test ./internal/mesos/masterstate -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/executor/runtime -run '^$$' -fuzz FuzzParsePIDFile -fuzztime $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Regenerate the Go code of proto/mesos/v1 (Debian's protobuf-compiler, and
# protoc-gen-go at the version go.mod pins).
proto:
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	protoc --plugin=protoc-gen-go=bin/protoc-gen-go -Iproto \
		--go_out=. --go_opt=module=github.com/k8sm/k8sm \
		proto/mesos/v1/mesos.proto proto/mesos/v1/scheduler/scheduler.proto proto/mesos/v1/executor/executor.proto proto/km/agent/v1/agent.proto

clean:
	rm -rf bin
