{{/*
Names. The RayService name is kept to 40 characters: KubeRay derives the RayCluster
(<name>-<suffix>), its Services (<name>-head-svc, <name>-serve-svc) and label values from it.
*/}}
{{- define "sentiray-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sentiray-serve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sentiray-serve.rayServiceName" -}}
{{- include "sentiray-serve.fullname" . | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* The Service KubeRay creates in front of the Serve proxies (port 8000). */}}
{{- define "sentiray-serve.serveServiceName" -}}
{{- printf "%s-serve-svc" (include "sentiray-serve.rayServiceName" .) }}
{{- end }}

{{- define "sentiray-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sentiray-serve.labels" -}}
helm.sh/chart: {{ include "sentiray-serve.chart" . }}
{{ include "sentiray-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sentiray
{{- end }}

{{- define "sentiray-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentiray-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sentiray-serve.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "sentiray-serve.apiTokenPath" -}}
/var/run/secrets/sentiray/api-token/{{ .Values.apiAuth.secretKey }}
{{- end }}

{{/*
Cross-field rules the JSON schema cannot express. Each message names the key to change.
*/}}
{{- define "sentiray-serve.validate" -}}
{{- $w := .Values.worker }}
{{- if gt (int $w.minReplicas) (int $w.maxReplicas) }}
{{- fail (printf "worker.minReplicas (%d) must not be above worker.maxReplicas (%d)" (int $w.minReplicas) (int $w.maxReplicas)) }}
{{- end }}
{{- if or (lt (int $w.replicas) (int $w.minReplicas)) (gt (int $w.replicas) (int $w.maxReplicas)) }}
{{- fail (printf "worker.replicas (%d) must lie between worker.minReplicas (%d) and worker.maxReplicas (%d)" (int $w.replicas) (int $w.minReplicas) (int $w.maxReplicas)) }}
{{- end }}
{{- if not $w.gpu.enabled }}
{{- range $deployment, $opts := .Values.rayActorOptions }}
{{- if gt (float64 (default 0 $opts.num_gpus)) 0.0 }}
{{- fail (printf "rayActorOptions.%s.num_gpus is %v but worker.gpu.enabled is false: the replicas could never be scheduled; set it to 0" $deployment $opts.num_gpus) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.apiAuth.enabled (not .Values.apiAuth.existingSecret) }}
{{- fail "apiAuth.existingSecret is required when apiAuth.enabled is true (a Secret holding the API bearer token)" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.host is required when ingress.enabled is true" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (not .Values.ingress.tls.secretName) }}
{{- fail "ingress.tls.secretName is required when ingress.tls.enabled is true" }}
{{- end }}
{{- if and .Values.gcsFaultTolerance.enabled (not .Values.gcsFaultTolerance.redisAddress) }}
{{- fail "gcsFaultTolerance.redisAddress is required when gcsFaultTolerance.enabled is true" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.maxUnavailable) (int $w.minReplicas)) (gt (int $w.minReplicas) 1) }}
{{- fail (printf "podDisruptionBudget.maxUnavailable (%d) must be below worker.minReplicas (%d), or the budget protects nothing" (int .Values.podDisruptionBudget.maxUnavailable) (int $w.minReplicas)) }}
{{- end }}
{{- end }}

{{/*
serveConfigV2: files/serve-config.yaml (a copy of serve/config.yaml, kept equal by
`sentiray k8s sync-serve-config` and a test) with only these changes: the builder args that locate
the model and the API token, each deployment's ray_actor_options from values, and the proxy bound
to all interfaces so the Kubernetes Service reaches it.
*/}}
{{- define "sentiray-serve.serveConfig" -}}
{{- $cfg := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- if not $cfg.applications }}
{{- fail "files/serve-config.yaml holds no applications: run `sentiray k8s sync-serve-config`" }}
{{- end }}
{{- $http := $cfg.http_options | default dict }}
{{- $_ := set $http "host" "0.0.0.0" }}
{{- $_ := set $cfg "http_options" $http }}
{{- range $app := $cfg.applications }}
{{- $args := $app.args | default dict }}
{{- $_ := set $args "model" $.Values.model.uri }}
{{- if $.Values.apiAuth.enabled }}
{{- $_ := set $args "api_token_file" (include "sentiray-serve.apiTokenPath" $) }}
{{- end }}
{{- $_ := set $app "args" $args }}
{{- range $deployment := $app.deployments }}
{{- with index $.Values.rayActorOptions $deployment.name }}
{{- $_ := set $deployment "ray_actor_options" . }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
A Ray pod template: hardened, with writable emptyDirs where Ray (/tmp), the object store
(/dev/shm, memory-backed) and the Hugging Face cache write. Called with
(dict "root" $ "group" <head or worker values> "component" "ray-head"|"ray-worker").
*/}}
{{- define "sentiray-serve.rayPodTemplate" -}}
{{- $root := .root }}
{{- $g := .group }}
{{- $isHead := eq .component "ray-head" }}
metadata:
  labels:
    {{- include "sentiray-serve.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- with $root.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- /* The autoscaler sidecar of the head calls the Kubernetes API with KubeRay's service account. */}}
  automountServiceAccountToken: {{ and $isHead $root.Values.autoscaling.enabled }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "sentiray-serve.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      ports:
        {{- if $isHead }}
        - {name: gcs-server, containerPort: 6379}
        - {name: dashboard, containerPort: 8265}
        - {name: client, containerPort: 10001}
        {{- end }}
        - {name: serve, containerPort: 8000}
        - {name: metrics, containerPort: {{ $root.Values.metricsPort }}}
      env:
        - {name: HF_HOME, value: /home/ray/.cache/huggingface}
        - {name: HF_HUB_DISABLE_TELEMETRY, value: "1"}
        {{- if $root.Values.hubToken.existingSecret }}
        - {name: HF_TOKEN_PATH, value: /var/run/secrets/sentiray/hub-token/{{ $root.Values.hubToken.secretKey }}}
        {{- end }}
        {{- if $root.Values.objectStore.credentialsSecret }}
        - {name: AWS_SHARED_CREDENTIALS_FILE, value: /var/run/secrets/sentiray/object-store/{{ $root.Values.objectStore.secretKey }}}
        {{- end }}
        {{- with $root.Values.objectStore.endpoint }}
        - {name: AWS_ENDPOINT_URL, value: {{ . | quote }}}
        {{- end }}
        {{- with $root.Values.objectStore.region }}
        - {name: AWS_REGION, value: {{ . | quote }}}
        {{- end }}
        {{- if $root.Values.apiAuth.enabled }}
        - {name: SENTIRAY_API_TOKEN_FILE, value: {{ include "sentiray-serve.apiTokenPath" $root }}}
        {{- end }}
        {{- with $root.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- $res := deepCopy $g.resources }}
        {{- if and (not $isHead) $g.gpu.enabled }}
        {{- $limits := $res.limits | default dict }}
        {{- $_ := set $limits $g.gpu.resourceName $g.gpu.perWorker }}
        {{- $_ := set $res "limits" $limits }}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      volumeMounts:
        - {name: tmp, mountPath: /tmp}
        - {name: shm, mountPath: /dev/shm}
        - {name: cache, mountPath: /home/ray/.cache}
        {{- if $root.Values.modelVolume.claimName }}
        - {name: model, mountPath: {{ $root.Values.modelVolume.mountPath }}, readOnly: true}
        {{- end }}
        {{- if $root.Values.apiAuth.enabled }}
        - {name: api-token, mountPath: /var/run/secrets/sentiray/api-token, readOnly: true}
        {{- end }}
        {{- if $root.Values.hubToken.existingSecret }}
        - {name: hub-token, mountPath: /var/run/secrets/sentiray/hub-token, readOnly: true}
        {{- end }}
        {{- if $root.Values.objectStore.credentialsSecret }}
        - {name: object-store, mountPath: /var/run/secrets/sentiray/object-store, readOnly: true}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $g.tmpSize }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $g.shmSize }}
    - name: cache
      emptyDir:
        sizeLimit: {{ $g.cacheSize }}
    {{- if $root.Values.modelVolume.claimName }}
    - name: model
      persistentVolumeClaim:
        claimName: {{ $root.Values.modelVolume.claimName }}
        readOnly: true
    {{- end }}
    {{- if $root.Values.apiAuth.enabled }}
    - name: api-token
      secret:
        secretName: {{ $root.Values.apiAuth.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if $root.Values.hubToken.existingSecret }}
    - name: hub-token
      secret:
        secretName: {{ $root.Values.hubToken.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if $root.Values.objectStore.credentialsSecret }}
    - name: object-store
      secret:
        secretName: {{ $root.Values.objectStore.credentialsSecret }}
        defaultMode: 0440
    {{- end }}
{{- end }}
