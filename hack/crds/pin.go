// Package crds only exists so that `go mod download` and go.sum keep the CRD source modules pinned.
package crds

import (
	_ "sigs.k8s.io/gateway-api/apis/v1"
	_ "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)
