// Command harness times Envoy Gateway's own translation of a fixed set of Kubernetes resources: the
// Gateway API translator (resources -> xDS IR, with route status), then the xDS translator (IR ->
// Envoy listeners, routes, clusters, endpoints), the two steps Envoy Gateway's gatewayapi and xds
// runners take for every update from its provider. The resources are loaded once, untimed.
//
//	harness -f workload.yaml -n REPEATS
//
// prints one JSON line with the per-iteration times (see README.md).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"github.com/envoyproxy/gateway/internal/gatewayapi"
	"github.com/envoyproxy/gateway/internal/gatewayapi/resource"
	"github.com/envoyproxy/gateway/internal/logging"
	"github.com/envoyproxy/gateway/internal/xds/translator"
	xdstypes "github.com/envoyproxy/gateway/internal/xds/types"
)

// controllerNamespace is where Envoy Gateway runs by default.
const controllerNamespace = "envoy-gateway-system"

// load reads a multi-document YAML file into Envoy Gateway's resource tree, as its Kubernetes
// provider hands it to the translator: typed objects with their metadata, plus the defaults the API
// server would have filled in (port protocol TCP, EndpointSlice address type IPv4).
func load(path string) (*resource.Resources, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := resource.NewResources()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, err
		}
		if meta.Kind == "" {
			continue
		}
		var obj any
		switch meta.Kind {
		case "GatewayClass":
			gc := &gwapiv1.GatewayClass{}
			obj, r.GatewayClass = gc, gc
		case "Gateway":
			g := &gwapiv1.Gateway{}
			obj, r.Gateways = g, append(r.Gateways, g)
		case "HTTPRoute":
			h := &gwapiv1.HTTPRoute{}
			obj, r.HTTPRoutes = h, append(r.HTTPRoutes, h)
		case "GRPCRoute":
			g := &gwapiv1.GRPCRoute{}
			obj, r.GRPCRoutes = g, append(r.GRPCRoutes, g)
		case "TLSRoute":
			t := &gwapiv1.TLSRoute{}
			obj, r.TLSRoutes = t, append(r.TLSRoutes, t)
		case "TCPRoute":
			t := &gwapiv1.TCPRoute{}
			obj, r.TCPRoutes = t, append(r.TCPRoutes, t)
		case "Namespace":
			n := &corev1.Namespace{}
			obj, r.Namespaces = n, append(r.Namespaces, n)
		case "Service":
			s := &corev1.Service{}
			obj, r.Services = s, append(r.Services, s)
		case "EndpointSlice":
			e := &discoveryv1.EndpointSlice{}
			obj, r.EndpointSlices = e, append(r.EndpointSlices, e)
		default:
			return nil, fmt.Errorf("unsupported kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", meta.Kind, err)
		}
	}
	if r.GatewayClass == nil {
		return nil, errors.New("the workload has no GatewayClass")
	}
	for _, s := range r.Services {
		for i := range s.Spec.Ports {
			if s.Spec.Ports[i].Protocol == "" {
				s.Spec.Ports[i].Protocol = corev1.ProtocolTCP
			}
		}
	}
	for _, e := range r.EndpointSlices {
		if e.AddressType == "" {
			e.AddressType = discoveryv1.AddressTypeIPv4
		}
		for i := range e.Ports {
			if e.Ports[i].Protocol == nil {
				tcp := corev1.ProtocolTCP
				e.Ports[i].Protocol = &tcp
			}
		}
	}
	// An installation's certgen job creates the "envoy" TLS Secret in the controller namespace and the
	// Kubernetes provider always hands it to the translator, which fails without it. Its contents are
	// only used for rate limiting and Wasm, which this workload does not use.
	r.Secrets = append(r.Secrets, &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "envoy", Namespace: controllerNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: []byte("unused"), corev1.TLSPrivateKeyKey: []byte("unused")},
	})
	r.Sort()
	return r, nil
}

type pass struct {
	result *gatewayapi.TranslateResult
	tables map[string]*xdstypes.ResourceVersionTable
	// irDone is when the Gateway API translation ended and the xDS translation began.
	irDone time.Time
}

// translate is one full pass: the Gateway API translator, then the xDS translator on every xDS IR it
// produced, configured as Envoy Gateway's runners configure them with a default EnvoyGateway config.
func translate(r *resource.Resources, log logging.Logger, eg *egv1a1.EnvoyGateway) (*pass, error) {
	t := &gatewayapi.Translator{
		GatewayControllerName: eg.Gateway.ControllerName,
		GatewayClassName:      gwapiv1.ObjectName(r.GatewayClass.Name),
		ControllerNamespace:   controllerNamespace,
		GatewayNamespaceMode:  eg.GatewayNamespaceMode(),
		MergeGateways:         gatewayapi.IsMergeGatewaysEnabled(r),
		MergeBackends:         gatewayapi.ResolveMergeBackendsConfig(r),
		Logger:                log,
	}
	result, err := t.Translate(context.Background(), r)
	if err != nil {
		return nil, fmt.Errorf("gatewayapi translation: %w", err)
	}
	irDone := time.Now()
	keys := make([]string, 0, len(result.XdsIR))
	for key := range result.XdsIR {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	tables := make(map[string]*xdstypes.ResourceVersionTable, len(keys))
	for _, key := range keys {
		xdsIR := result.XdsIR[key]
		x := &translator.Translator{
			ControllerNamespace: controllerNamespace,
			FilterOrder:         xdsIR.FilterOrder,
			RuntimeFlags:        eg.RuntimeFlags,
			Logger:              log,
		}
		table, err := x.Translate(context.Background(), xdsIR)
		if err != nil {
			return nil, fmt.Errorf("xds translation of %s: %w", key, err)
		}
		tables[key] = table
	}
	return &pass{result: result, tables: tables, irDone: irDone}, nil
}

// marshal serialises every xDS resource deterministically, as a push of the snapshot would.
func marshal(p *pass) (int, error) {
	size := 0
	opts := proto.MarshalOptions{Deterministic: true}
	for _, table := range p.tables {
		for _, resources := range table.XdsResources {
			for _, res := range resources {
				b, err := opts.Marshal(res)
				if err != nil {
					return 0, err
				}
				size += len(b)
			}
		}
	}
	return size, nil
}

type counts struct {
	Listeners, RouteConfigs, Routes, Clusters, Endpoints, LbEndpoints int
}

func count(p *pass) counts {
	var c counts
	for _, table := range p.tables {
		c.Listeners += len(table.XdsResources[resourcev3.ListenerType])
		for _, res := range table.XdsResources[resourcev3.RouteType] {
			if rc, ok := res.(*routev3.RouteConfiguration); ok {
				c.RouteConfigs++
				for _, vh := range rc.VirtualHosts {
					c.Routes += len(vh.Routes)
				}
			}
		}
		for _, res := range table.XdsResources[resourcev3.ClusterType] {
			if _, ok := res.(*clusterv3.Cluster); ok {
				c.Clusters++
			}
		}
		for _, res := range table.XdsResources[resourcev3.EndpointType] {
			if cla, ok := res.(*endpointv3.ClusterLoadAssignment); ok {
				c.Endpoints++
				for _, le := range cla.Endpoints {
					c.LbEndpoints += len(le.LbEndpoints)
				}
			}
		}
	}
	return c
}

// routeStatus counts the HTTPRoutes whose every parent status says Accepted=True, and those whose
// every parent says ResolvedRefs=True; it also returns the distinct messages of the others.
func routeStatus(p *pass) (accepted, resolved int, problems []string) {
	seen := map[string]bool{}
	var statuses []gwapiv1.RouteStatus
	for _, route := range p.result.HTTPRoutes {
		statuses = append(statuses, route.Status.RouteStatus)
	}
	for _, route := range p.result.GRPCRoutes {
		statuses = append(statuses, route.Status.RouteStatus)
	}
	for _, route := range p.result.TLSRoutes {
		statuses = append(statuses, route.Status.RouteStatus)
	}
	for _, route := range p.result.TCPRoutes {
		statuses = append(statuses, route.Status.RouteStatus)
	}
	for _, status := range statuses {
		ok, refs := len(status.Parents) > 0, len(status.Parents) > 0
		for _, parent := range status.Parents {
			for _, cond := range parent.Conditions {
				if cond.Status == metav1.ConditionTrue {
					continue
				}
				switch cond.Type {
				case string(gwapiv1.RouteConditionAccepted):
					ok = false
				case string(gwapiv1.RouteConditionResolvedRefs):
					refs = false
				}
				msg := cond.Type + ": " + cond.Reason + ": " + cond.Message
				if !seen[msg] && len(problems) < 10 {
					seen[msg] = true
					problems = append(problems, msg)
				}
			}
		}
		if ok {
			accepted++
		}
		if refs {
			resolved++
		}
	}
	return accepted, resolved, problems
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return math.Round((s[n/2-1]+s[n/2])/2*1000) / 1000
}

func minimum(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

func egVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/envoyproxy/gateway" {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func main() {
	file := flag.String("f", "", "multi-document YAML of the resources to translate")
	repeats := flag.Int("n", 10, "timed translations")
	mergeBackends := flag.Bool("merge-backends", false, "enable EnvoyProxy mergeBackends (one Envoy cluster per backend instead of one per route rule), as set in the EnvoyGateway config's default EnvoyProxy spec")
	dump := flag.String("dump", "", "write the last pass's xDS resources to this file as JSON lines, for inspection")
	dropped := flag.String("dropped", "", "comma-separated note of workload fields left out for this peer, echoed in the output")
	flag.Parse()
	if *file == "" || *repeats < 1 {
		flag.Usage()
		os.Exit(2)
	}
	r, err := load(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	eg := egv1a1.DefaultEnvoyGateway()
	eg.SetEnvoyGatewayDefaults()
	if *mergeBackends {
		eg.EnvoyProxy = &egv1a1.EnvoyProxySpec{MergeBackends: &egv1a1.MergeBackendsConfig{}}
	}
	r.EnvoyProxyDefaultSpec = eg.GetEnvoyProxyDefaultSpec() // as the Kubernetes provider sets it
	log := logging.DefaultLogger(io.Discard, egv1a1.LogLevelInfo)

	var (
		total, gwapi, xds, marshalMs []float64
		last                         *pass
		size                         int
	)
	for i := 0; i < *repeats; i++ {
		// Each pass starts after a collection, with the previous pass's output still live (the runners
		// keep the last result until the next one replaces it).
		runtime.GC()
		started := time.Now()
		p, err := translate(r, log, eg)
		done := time.Now()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		total = append(total, ms(done.Sub(started)))
		gwapi = append(gwapi, ms(p.irDone.Sub(started)))
		xds = append(xds, ms(done.Sub(p.irDone)))
		last = p
		// Serialisation is timed apart: Envoy Gateway does it when it pushes, not when it translates.
		m0 := time.Now()
		size, err = marshal(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "marshal:", err)
			os.Exit(1)
		}
		marshalMs = append(marshalMs, ms(time.Since(m0)))
	}
	if *dump != "" {
		if err := dumpResources(*dump, last); err != nil {
			fmt.Fprintln(os.Stderr, "dump:", err)
			os.Exit(1)
		}
	}
	c := count(last)
	accepted, resolved, problems := routeStatus(last)
	out := map[string]any{
		"peer":                 "envoy-gateway",
		"version":              egVersion(),
		"routes":               len(r.HTTPRoutes) + len(r.GRPCRoutes) + len(r.TLSRoutes) + len(r.TCPRoutes),
		"iterations_ms":        total,
		"median_ms":            median(total),
		"min_ms":               minimum(total),
		"gatewayapi_median_ms": median(gwapi),
		"xds_median_ms":        median(xds),
		"marshal_median_ms":    median(marshalMs),
		"marshal_bytes":        size,
		"xds_listeners":        c.Listeners,
		"xds_route_configs":    c.RouteConfigs,
		"xds_routes":           c.Routes,
		"xds_clusters":         c.Clusters,
		"xds_endpoints":        c.Endpoints,
		"xds_lb_endpoints":     c.LbEndpoints,
		"xds_irs":              len(last.tables),
		"routes_accepted":      accepted,
		"routes_resolved":      resolved,
		"route_problems":       problems,
		"dropped":              splitDropped(*dropped),
		"merge_backends":       *mergeBackends,
		"gomaxprocs":           runtime.GOMAXPROCS(0),
		"go":                   runtime.Version(),
	}
	line, err := jsonLine(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(line)
}

func splitDropped(s string) []string {
	out := []string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func jsonLine(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func dumpResources(path string, p *pass) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, table := range p.tables {
		types := make([]string, 0, len(table.XdsResources))
		for t := range table.XdsResources {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			for _, res := range table.XdsResources[t] {
				b, err := protojson.Marshal(res)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s %s\n", t, b)
			}
		}
	}
	return w.Flush()
}
