//go:build tools

// Package conformance is never compiled: it lists what `go mod tidy` must keep in go.sum so that
// `go test -c sigs.k8s.io/gateway-api/conformance` (the suite plus its test files) and
// `go build .../conformance/echo-basic` resolve from this module alone.
package conformance

import (
	_ "github.com/stretchr/testify/assert"
	_ "github.com/stretchr/testify/require"
	_ "k8s.io/utils/ptr"
	_ "sigs.k8s.io/gateway-api/conformance"
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
	_ "sigs.k8s.io/gateway-api/conformance/utils/flags"
	_ "sigs.k8s.io/gateway-api/conformance/utils/suite"
	_ "sigs.k8s.io/gateway-api/pkg/features"
	_ "sigs.k8s.io/yaml"
)
