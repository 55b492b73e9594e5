{{- define "mcgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcgw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mcgw.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mcgw.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcgw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcgw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcgw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mcgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mcgw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcgw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is needed when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding a member's kubeconfig: the one the chart renders, or the user's. */}}
{{- define "mcgw.memberSecret" -}}
{{- if .member.existingSecret -}}
{{- .member.existingSecret -}}
{{- else -}}
{{- printf "%s-member-%s" (include "mcgw.fullname" .root) .member.name | trunc 253 -}}
{{- end -}}
{{- end -}}

{{- define "mcgw.hostPort" -}}
{{- if contains ":" .host -}}[{{ .host }}]:{{ .port }}{{- else -}}{{ .host }}:{{ .port }}{{- end -}}
{{- end -}}

{{- define "mcgw.xdsAddress" -}}
{{- if .Values.provisioning.xdsAddress -}}
{{- .Values.provisioning.xdsAddress -}}
{{- else -}}
{{- printf "%s.%s.svc.%s:%d" (include "mcgw.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.xds.port) -}}
{{- end -}}
{{- end -}}

{{/* Values the schema cannot judge, each failing with what to change. */}}
{{- define "mcgw.validate" -}}
{{- if not .Values.members -}}
{{- fail "members is empty: list at least one member cluster, each with a name and a kubeconfig (inline) or an existingSecret" -}}
{{- end -}}
{{- $names := list -}}
{{- range $i, $m := .Values.members -}}
{{- if not $m.name -}}
{{- fail (printf "members[%d] has no name" $i) -}}
{{- end -}}
{{- if has $m.name $names -}}
{{- fail (printf "members: %q is listed twice; member names are cluster IDs and must be unique" $m.name) -}}
{{- end -}}
{{- $names = append $names $m.name -}}
{{- if and $m.kubeconfig $m.existingSecret -}}
{{- fail (printf "member %q has both kubeconfig and existingSecret: give one" $m.name) -}}
{{- end -}}
{{- if not (or $m.kubeconfig $m.existingSecret) -}}
{{- fail (printf "member %q has no kubeconfig source: set kubeconfig (the file's contents; the chart renders a Secret) or existingSecret (a Secret in the release namespace holding it)" $m.name) -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: every replica would write status; enable leader election or run one replica" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.xds.tls.existingSecret .Values.provisioning.enabled -}}
{{- fail "xds.tls.existingSecret needs provisioning.enabled: false (provisioned Envoys get their certificates from mcgw's CA, xds.ca)" -}}
{{- end -}}
{{- if and .Values.xds.tls.existingSecret .Values.xds.insecure -}}
{{- fail "xds.insecure: true serves plaintext and xds.tls.existingSecret a certificate: choose one" -}}
{{- end -}}
{{- end -}}

{{/* The run config (mcgw run --config), built as data so toYaml quotes whatever needs quoting. */}}
{{- define "mcgw.runConfig" -}}
{{- $clusters := list -}}
{{- range .Values.members -}}
{{- $c := dict "name" .name "kubeconfig" (printf "/etc/mcgw/members/%s/kubeconfig" .name) -}}
{{- with .region }}{{ $_ := set $c "region" . }}{{ end -}}
{{- with .zone }}{{ $_ := set $c "zone" . }}{{ end -}}
{{- with .failoverOrder }}{{ $_ := set $c "failoverOrder" . }}{{ end -}}
{{- with .context }}{{ $_ := set $c "context" . }}{{ end -}}
{{- $clusters = append $clusters $c -}}
{{- end -}}
{{- $v := .Values.xds -}}
{{- $ca := dict "namespace" $v.ca.namespace "name" $v.ca.name "create" $v.ca.create "resync" $v.ca.resync -}}
{{- with $v.ca.cluster }}{{ $_ := set $ca "cluster" . }}{{ end -}}
{{- $xds := dict "listen" (printf "0.0.0.0:%d" (int $v.port)) "insecure" $v.insecure "ca" $ca "trustDomain" $v.trustDomain "certificateLifetime" $v.certificateLifetime "serverNames" $v.serverNames -}}
{{- if not (kindIs "invalid" $v.maxConnectionAge) }}{{ $_ := set $xds "maxConnectionAge" $v.maxConnectionAge }}{{ end -}}
{{- if $v.tls.existingSecret -}}
{{- $_ := set $xds "tls" (dict "cert" "/etc/mcgw/xds-tls/tls.crt" "key" "/etc/mcgw/xds-tls/tls.key" "clientCa" "/etc/mcgw/xds-tls/ca.crt") -}}
{{- end -}}
{{- $provisioning := dict "enabled" .Values.provisioning.enabled "addressPools" .Values.provisioning.addressPools "xdsReplicas" (int .Values.replicaCount) -}}
{{- if .Values.provisioning.enabled }}{{ $_ := set $provisioning "xdsAddress" (include "mcgw.xdsAddress" .) }}{{ end -}}
{{- $admin := dict "listen" (include "mcgw.hostPort" (dict "host" .Values.admin.listenAddress "port" (int .Values.admin.port))) -}}
{{- $config := dict "clusters" $clusters "xds" $xds "provisioning" $provisioning "admin" $admin "reconcile" .Values.reconcile "leaderElection" .Values.leaderElection "lostClusterTtl" .Values.lostClusterTtl -}}
{{- toYaml $config -}}
{{- end -}}
