{{/* The chart's name, or nameOverride. */}}
{{- define "strata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name. Cut to 40 characters so that the longest names made
from it (<fullname>-gateway-headless, the gateways' pod names with the StatefulSet's
revision hash label) stay within Kubernetes' 63-character limits.
*/}}
{{- define "strata.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select a component's pods; takes (dict "root" $ "component" NAME). */}}
{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* The standard labels of every object; takes (dict "root" $ "component" NAME). */}}
{{- define "strata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "strata.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: strata
{{- end }}

{{- define "strata.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "strata.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strata.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* HOST:PORT for a listener on every interface of the pod. */}}
{{- define "strata.bind" -}}
{{- printf "%s:%d" .root.Values.bindAddress (int .port) }}
{{- end }}

{{/*
Pod scheduling: the component's affinity, else a preference for spreading its pods over
nodes, so that losing one node takes one gateway, coordinator or etcd member.
Takes (dict "root" $ "component" NAME "values" .Values.COMPONENT).
*/}}
{{- define "strata.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints: {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
{{- if .values.affinity }}
  {{- toYaml .values.affinity | nindent 2 }}
{{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels: {{- include "strata.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end }}

{{/* etcd */}}

{{- define "strata.etcd.fullname" -}}
{{- printf "%s-etcd" (include "strata.fullname" .) }}
{{- end }}

{{- define "strata.etcd.headless" -}}
{{- printf "%s-etcd-headless" (include "strata.fullname" .) }}
{{- end }}

{{/* The stable DNS name of etcd member $i; takes (dict "root" $ "index" i). */}}
{{- define "strata.etcd.memberHost" -}}
{{- $root := .root }}
{{- printf "%s-%d.%s.%s.svc.%s" (include "strata.etcd.fullname" $root) (int .index) (include "strata.etcd.headless" $root) $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}

{{/*
The etcd endpoints given to gateways and coordinators: every member by its own DNS name
(Strata moves on to the next member when one fails), or the external list.
*/}}
{{- define "strata.etcd.endpoints" -}}
{{- if .Values.etcd.enabled }}
{{- $endpoints := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $endpoints = append $endpoints (printf "http://%s:%d" (include "strata.etcd.memberHost" (dict "root" $ "index" $i)) (int $.Values.etcd.clientPort)) }}
{{- end }}
{{- join "," $endpoints }}
{{- else }}
{{- join "," .Values.etcd.externalEndpoints }}
{{- end }}
{{- end }}

{{/* --initial-cluster: every member's name and peer URL. */}}
{{- define "strata.etcd.initialCluster" -}}
{{- $members := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $members = append $members (printf "%s-%d=http://%s:%d" (include "strata.etcd.fullname" $) $i (include "strata.etcd.memberHost" (dict "root" $ "index" $i)) (int $.Values.etcd.peerPort)) }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{/* Gateways */}}

{{- define "strata.gateway.fullname" -}}
{{- printf "%s-gateway" (include "strata.fullname" .) }}
{{- end }}

{{- define "strata.gateway.headless" -}}
{{- printf "%s-gateway-headless" (include "strata.fullname" .) }}
{{- end }}

{{- define "strata.gateway.bootstrap" -}}
{{- printf "%s-bootstrap" (include "strata.fullname" .) }}
{{- end }}

{{/* The most gateways there can be: the autoscaler's maximum, else the replica count. */}}
{{- define "strata.gateway.maxReplicas" -}}
{{- if .Values.gateway.autoscaling.enabled }}
{{- int .Values.gateway.autoscaling.maxReplicas }}
{{- else }}
{{- int .Values.gateway.replicas }}
{{- end }}
{{- end }}

{{/*
The address gateway $i advertises with external access on: the advertisedListener
template with what Kubernetes substitutes in the pod filled in for that pod ($(HOST_IP)
is left as it is). Takes (dict "root" $ "index" i).
*/}}
{{- define "strata.externalAccess.address" -}}
{{- $pod := printf "%s-%d" (include "strata.gateway.fullname" .root) (int .index) }}
{{- .root.Values.externalAccess.advertisedListener | replace "$(POD_NAME)" $pod | replace "$(POD_INDEX)" (toString .index) }}
{{- end }}

{{/* The object store URL the gateways share: storage.url, else the local volume. */}}
{{- define "strata.storage.url" -}}
{{- .Values.storage.url | default (printf "file://%s" .Values.storage.localVolume.mountPath) }}
{{- end }}

{{/* The store's kind, from its URL's scheme: s3, gs, az or file. */}}
{{- define "strata.storage.scheme" -}}
{{- include "strata.storage.url" . | splitList "://" | first }}
{{- end }}

{{/* Where the GCS service account key is mounted in the gateways. */}}
{{- define "strata.storage.gcsKeyDir" -}}
/var/run/secrets/strata/gcs
{{- end }}

{{/* The config file: the config map as TOML, one `"key" = value` line each. */}}
{{- define "strata.configToml" -}}
{{- range $key, $value := .Values.config }}
{{ toJson $key }} = {{ include "strata.tomlValue" (dict "key" $key "value" $value) }}
{{- end }}
{{- range $key, $value := include "strata.listenerConfig" . | fromYaml }}
{{ toJson $key }} = {{ toJson $value }}
{{- end }}
{{- end }}

{{/*
The gateways' listener settings the chart owns: the protocol of each listener, the
inter-broker listener, and the files of the TLS Secret's mount. The addresses are
per-pod, in STRATA_LISTENERS and STRATA_ADVERTISED_LISTENERS.
*/}}
{{- define "strata.listenerConfig" -}}
{{- $protocols := list (printf "INTERNAL:%s" .Values.listeners.internal.protocol) }}
{{- if .Values.externalAccess.enabled }}
{{- $protocols = append $protocols (printf "EXTERNAL:%s" .Values.listeners.external.protocol) }}
{{- end }}
listener.security.protocol.map: {{ join "," $protocols | quote }}
inter.broker.listener.name: INTERNAL
{{- with .Values.tls.existingSecret }}
ssl.keystore.location: {{ printf "%s/tls.crt" $.Values.tls.mountPath | quote }}
ssl.key.location: {{ printf "%s/tls.key" $.Values.tls.mountPath | quote }}
{{- with $.Values.tls.caKey }}
ssl.truststore.location: {{ printf "%s/%s" $.Values.tls.mountPath . | quote }}
{{- end }}
ssl.client.auth: {{ $.Values.tls.clientAuth | quote }}
{{- end }}
{{- end }}

{{/*
A gateway's listeners, and the addresses it advertises: its per-pod DNS name on INTERNAL,
externalAccess.advertisedListener on EXTERNAL. Takes (dict "root" $ "advertised" BOOL).
*/}}
{{- define "strata.gateway.listeners" -}}
{{- $root := .root }}
{{- $internalPort := int $root.Values.gateway.kafkaPort }}
{{- $listeners := list }}
{{- if .advertised }}
{{- $listeners = append $listeners (printf "INTERNAL://$(POD_NAME).%s.%s.svc.%s:%d" (include "strata.gateway.headless" $root) $root.Release.Namespace $root.Values.clusterDomain $internalPort) }}
{{- if $root.Values.externalAccess.enabled }}
{{- $listeners = append $listeners (printf "EXTERNAL://%s" $root.Values.externalAccess.advertisedListener) }}
{{- end }}
{{- else }}
{{- $listeners = append $listeners (printf "INTERNAL://%s" (include "strata.bind" (dict "root" $root "port" $internalPort))) }}
{{- if $root.Values.externalAccess.enabled }}
{{- $listeners = append $listeners (printf "EXTERNAL://%s" (include "strata.bind" (dict "root" $root "port" $root.Values.listeners.external.containerPort))) }}
{{- end }}
{{- end }}
{{- join "," $listeners }}
{{- end }}

{{/*
One TOML value. Helm reads every number in values as a float, which would print as
6.7108864e+07: whole numbers are printed as integers, the only numbers Strata takes.
*/}}
{{- define "strata.tomlValue" -}}
{{- $value := .value }}
{{- if kindIs "bool" $value }}
{{- $value }}
{{- else if kindIs "string" $value }}
{{- toJson $value }}
{{- else if or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value) }}
{{- if ne (float64 $value) (float64 (int64 $value)) }}
{{- fail (printf "config %q = %v: Strata takes whole numbers only" .key $value) }}
{{- end }}
{{- int64 $value }}
{{- else }}
{{- fail (printf "config %q: expected a string, number or boolean, got %s" .key (kindOf $value)) }}
{{- end }}
{{- end }}
