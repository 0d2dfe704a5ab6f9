{{/*
Values that cannot work stop the install with a message saying what to change, rather
than render objects that fail once running. Included by the gateway StatefulSet, which
every install renders.
*/}}
{{- define "strata.validate" -}}
{{- $v := .Values }}

{{- if lt (int $v.coordinator.replicas) 1 }}
{{- fail "coordinator.replicas must be at least 1 (2 or more keep a standby ready to take over)" }}
{{- end }}

{{- if $v.gateway.autoscaling.enabled }}
{{- if lt (int $v.gateway.autoscaling.minReplicas) 1 }}
{{- fail "gateway.autoscaling.minReplicas must be at least 1" }}
{{- end }}
{{- if lt (int $v.gateway.autoscaling.maxReplicas) (int $v.gateway.autoscaling.minReplicas) }}
{{- fail "gateway.autoscaling.maxReplicas must be at least gateway.autoscaling.minReplicas" }}
{{- end }}
{{- if not (dig "requests" "cpu" "" $v.gateway.resources) }}
{{- fail "gateway.autoscaling scales on CPU utilization, a share of the CPU request: set gateway.resources.requests.cpu" }}
{{- end }}
{{- else if lt (int $v.gateway.replicas) 1 }}
{{- fail "gateway.replicas must be at least 1" }}
{{- end }}

{{- if le (int $v.gateway.terminationGracePeriodSeconds) 30 }}
{{- fail "gateway.terminationGracePeriodSeconds must exceed 30: a gateway finishes open requests for up to 30 s on SIGTERM, then flushes, commits and unregisters" }}
{{- end }}

{{- if $v.etcd.enabled }}
{{- if lt (int $v.etcd.replicas) 1 }}
{{- fail "etcd.replicas must be at least 1 (3 for a cluster that survives losing a member)" }}
{{- end }}
{{- else }}
{{- if not $v.etcd.externalEndpoints }}
{{- fail "etcd.enabled is false: list the external etcd's members in etcd.externalEndpoints (http://host:port each)" }}
{{- end }}
{{- range $v.etcd.externalEndpoints }}
{{- if not (regexMatch "^http://[^/,]+:[0-9]+$" .) }}
{{- fail (printf "etcd.externalEndpoints: %q is not http://host:port (Strata talks to etcd without TLS)" .) }}
{{- end }}
{{- end }}
{{- end }}

{{- with $v.storage.url }}
{{- if not (has (include "strata.storage.scheme" $) (list "s3" "gs" "az")) }}
{{- fail (printf "storage.url %q: expected s3://, gs:// or az:// (leave it empty for a file:// store on storage.localVolume)" .) }}
{{- end }}
{{- else }}
{{- if not (isAbs $v.storage.localVolume.mountPath) }}
{{- fail "storage.localVolume.mountPath must be an absolute path" }}
{{- end }}
{{- end }}

{{- if .Values.externalAccess.enabled }}
{{- include "strata.validateExternalAccess" . }}
{{- end }}
{{- include "strata.validateListeners" . }}
{{- end }}

{{/*
Listener protocols and the TLS Secret: what a gateway would refuse at start-up, or what
would put a secret in the ConfigMap.
*/}}
{{- define "strata.validateListeners" -}}
{{- $tls := .Values.tls }}
{{- $names := list "internal" }}
{{- if .Values.externalAccess.enabled }}
{{- $names = append $names "external" }}
{{- end }}
{{- range $name := $names }}
{{- $protocol := (index $.Values.listeners $name).protocol }}
{{- if not (has $protocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) }}
{{- fail (printf "listeners.%s.protocol %q: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" $name $protocol) }}
{{- end }}
{{- if and (has $protocol (list "SSL" "SASL_SSL")) (not $tls.existingSecret) }}
{{- fail (printf "listeners.%s.protocol is %s: set tls.existingSecret to a kubernetes.io/tls Secret with the gateways' certificate" $name $protocol) }}
{{- end }}
{{- end }}
{{- $externalPort := int .Values.listeners.external.containerPort }}
{{- if and .Values.externalAccess.enabled (has $externalPort (list (int .Values.gateway.kafkaPort) (int .Values.gateway.httpPort))) }}
{{- fail (printf "listeners.external.containerPort %d is also gateway.kafkaPort or gateway.httpPort: the EXTERNAL listener needs its own port" $externalPort) }}
{{- end }}
{{- if hasPrefix "SASL_" .Values.listeners.internal.protocol }}
{{- fail "listeners.internal.protocol cannot be SASL_*: the gateways log in to each other on the internal listener, and their password would be in the config file, a ConfigMap. Use SSL (with tls.clientAuth required for mutual TLS) inside, SASL on listeners.external" }}
{{- end }}
{{- if not (has $tls.clientAuth (list "none" "requested" "required")) }}
{{- fail (printf "tls.clientAuth %q: expected none, requested or required" $tls.clientAuth) }}
{{- end }}
{{- if and (ne $tls.clientAuth "none") (not $tls.caKey) }}
{{- fail (printf "tls.clientAuth is %s: client certificates are checked against a CA, set tls.caKey to the Secret's key holding it (ca.crt from cert-manager)" $tls.clientAuth) }}
{{- end }}
{{- if and (eq .Values.listeners.internal.protocol "SSL") (not $tls.caKey) }}
{{- fail "listeners.internal.protocol is SSL: gateways check each other's certificates against a CA, set tls.caKey to the Secret's key holding it (ca.crt from cert-manager)" }}
{{- end }}
{{- if and $tls.existingSecret (not (isAbs $tls.mountPath)) }}
{{- fail "tls.mountPath must be an absolute path" }}
{{- end }}
{{- range $key := keys (include "strata.listenerConfig" . | fromYaml) | concat (list "listeners" "advertised.listeners" "ssl.keystore.location" "ssl.key.location" "ssl.truststore.location" "ssl.client.auth") | uniq | sortAlpha }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config %q is set by the chart (listeners, tls): set it through those values" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Each gateway learns its external address only from what Kubernetes substitutes in its
pod ($(POD_NAME), $(POD_INDEX), $(HOST_IP)), so the template must give every pod its own
address, on the port of that pod's Service.
*/}}
{{- define "strata.validateExternalAccess" -}}
{{- $access := .Values.externalAccess }}
{{- if not (has $access.type (list "NodePort" "LoadBalancer")) }}
{{- fail (printf "externalAccess.type %q: expected NodePort or LoadBalancer" $access.type) }}
{{- end }}
{{- $template := required "externalAccess.advertisedListener is required when externalAccess.enabled: the HOST:PORT each gateway advertises, with $(POD_NAME) or $(POD_INDEX) in it, e.g. $(POD_NAME).kafka.example.com:9094" $access.advertisedListener }}
{{- $count := int (include "strata.gateway.maxReplicas" .) }}
{{- if and (eq $access.type "NodePort") (lt (len $access.nodePorts) $count) }}
{{- fail (printf "externalAccess.nodePorts lists %d ports, but there can be %d gateways (gateway.replicas, or gateway.autoscaling.maxReplicas): list one node port per gateway" (len $access.nodePorts) $count) }}
{{- end }}
{{- $addresses := list }}
{{- range $i := until $count }}
{{- $address := include "strata.externalAccess.address" (dict "root" $ "index" $i) }}
{{- $port := toString (int $access.port) }}
{{- if eq $access.type "NodePort" }}
{{- $port = toString (int (index $access.nodePorts $i)) }}
{{- end }}
{{- if ne (last (splitList ":" $address)) $port }}
{{- fail (printf "externalAccess.advertisedListener gives gateway %d the address %q, but its Service listens on port %s: the advertised port must be that Service's (externalAccess.nodePorts[%d] for NodePort, externalAccess.port for LoadBalancer)" $i $address $port $i) }}
{{- end }}
{{- $addresses = append $addresses $address }}
{{- end }}
{{- if ne (len (uniq $addresses)) (len $addresses) }}
{{- fail (printf "externalAccess.advertisedListener %q gives several gateways the same address: put $(POD_NAME) or $(POD_INDEX) in it" $template) }}
{{- end }}
{{- end }}
