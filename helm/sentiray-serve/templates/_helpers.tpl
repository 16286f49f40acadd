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

{{/*
Labels of the Ray pod templates. Not the chart's: app.kubernetes.io/name would override KubeRay's own
`app.kubernetes.io/name: kuberay`, on which the head Service KubeRay builds selects (KubeRay issues 2648,
2564), and helm.sh/chart or the version would change the cluster hash on every chart bump, which makes
KubeRay start a second cluster. Our selectors use these instead.
*/}}
{{- define "sentiray-serve.raySelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
sentiray.io/app: {{ include "sentiray-serve.name" . }}
{{- end }}

{{- define "sentiray-serve.rayPodLabels" -}}
{{ include "sentiray-serve.raySelectorLabels" . }}
app.kubernetes.io/part-of: sentiray
{{- end }}

{{/* A Kubernetes quantity ("4Gi", "512M", "1e9") in bytes, as an integer string. */}}
{{- define "sentiray-serve.bytes" -}}
{{- $q := toString . }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $mult := dict "" 1.0 "k" 1000.0 "K" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 }}
{{- printf "%.0f" (mulf (float64 $num) (get $mult (trimPrefix $num $q))) }}
{{- end }}

{{/*
object-store-memory of a group: 80% of its /dev/shm. Ray 2.60 sizes the object store at 30% of the
memory and puts it on disk when /dev/shm is smaller (ray/_private/services.py,
determine_plasma_store_config); the 20% left is for what else uses /dev/shm (NCCL, torch workers).
*/}}
{{- define "sentiray-serve.objectStoreBytes" -}}
{{- printf "%.0f" (mulf (float64 (include "sentiray-serve.bytes" .)) 0.8) }}
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
The serve config's model deployment and its options as they will be rendered (serve/config.yaml with
the chart's tuning applied). Returns YAML; used by the validation and by serveConfigV2.
*/}}
{{- define "sentiray-serve.modelDeployment" -}}
{{- $cfg := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- $found := dict }}
{{- range $app := $cfg.applications }}
{{- range $d := $app.deployments }}
{{- if eq $d.name $.Values.serve.modelDeployment }}{{ $found = $d }}{{ end }}
{{- end }}
{{- end }}
{{- toYaml $found }}
{{- end }}

{{/*
Model replicas the fixed worker group holds when the autoscaler is off: per pod, what its GPUs admit
and what its CPUs admit beside one ingress replica; times the pods. KubeRay then never adds a pod, so
a Serve max_replicas above this waits forever for a node.
*/}}
{{- define "sentiray-serve.fixedCapacity" -}}
{{- $w := .Values.worker }}
{{- $model := index .Values.rayActorOptions .Values.serve.modelDeployment | default dict }}
{{- $mcpu := float64 (default 1 $model.num_cpus) }}
{{- $mgpu := float64 (default 0 $model.num_gpus) }}
{{- $ingress := index .Values.rayActorOptions "SentimentIngress" | default dict }}
{{- $icpu := float64 (default 0 $ingress.num_cpus) }}
{{- $podcpu := ceil (float64 (include "sentiray-serve.cores" (default $w.resources.requests.cpu $w.resources.limits.cpu))) }}
{{- $perPod := 1000000 }}
{{- if gt $mcpu 0.0 }}{{ $perPod = int (floor (divf (subf $podcpu $icpu) $mcpu)) }}{{ end }}
{{- if gt $mgpu 0.0 }}
{{- $byGpu := int (floor (divf (float64 (ternary $w.gpu.perWorker 0 $w.gpu.enabled)) $mgpu)) }}
{{- if lt $byGpu $perPod }}{{ $perPod = $byGpu }}{{ end }}
{{- end }}
{{- mul (max $perPod 0) $w.replicas }}
{{- end }}

{{/* CPU cores of a quantity ("4", "3500m", 2). */}}
{{- define "sentiray-serve.cores" -}}
{{- $q := toString . }}
{{- if hasSuffix "m" $q }}{{ divf (float64 (trimSuffix "m" $q)) 1000.0 }}{{ else }}{{ float64 $q }}{{ end }}
{{- end }}

{{/*
Cross-field rules the JSON schema cannot express. Each message names the key to change.
*/}}
{{- define "sentiray-serve.validate" -}}
{{- $w := .Values.worker }}
{{- $s := .Values.serve }}
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
{{- $model := include "sentiray-serve.modelDeployment" . | fromYaml }}
{{- if not $model.name }}
{{- fail (printf "serve.modelDeployment %q is not a deployment of files/serve-config.yaml" $s.modelDeployment) }}
{{- end }}
{{- $scaling := $model.autoscaling_config | default dict }}
{{- $min := ternary $scaling.min_replicas $s.minReplicas (kindIs "invalid" $s.minReplicas) }}
{{- $max := ternary $scaling.max_replicas $s.maxReplicas (kindIs "invalid" $s.maxReplicas) }}
{{- if and (not (kindIs "invalid" $min)) (not (kindIs "invalid" $max)) (gt (int $min) (int $max)) }}
{{- fail (printf "serve.minReplicas (%v) must not be above serve.maxReplicas (%v)" $min $max) }}
{{- end }}
{{- if not .Values.autoscaling.enabled }}
{{- $cap := int (include "sentiray-serve.fixedCapacity" .) }}
{{- if and (not (kindIs "invalid" $s.maxReplicas)) (gt (int $s.maxReplicas) $cap) }}
{{- fail (printf "serve.maxReplicas (%v) model replicas do not fit the %d fixed worker(s) (room for %d) with autoscaling.enabled=false: they would wait forever for a node; lower it, add workers or turn autoscaling on" $s.maxReplicas (int $w.replicas) $cap) }}
{{- end }}
{{- if and (not (kindIs "invalid" $min)) (gt (int $min) $cap) }}
{{- fail (printf "serve.minReplicas (%v) model replicas do not fit the %d fixed worker(s) (room for %d) with autoscaling.enabled=false" $min (int $w.replicas) $cap) }}
{{- end }}
{{- end }}
{{- $batch := ternary (index (include "sentiray-serve.appArgs" . | fromYaml) "max_batch_size") $s.maxBatchSize (kindIs "invalid" $s.maxBatchSize) }}
{{- if and $model.max_ongoing_requests $batch (gt (int $batch) (int $model.max_ongoing_requests)) }}
{{- fail (printf "serve.maxBatchSize (%v) is above %s's max_ongoing_requests (%v): a batch could never fill" $batch $s.modelDeployment $model.max_ongoing_requests) }}
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
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (ge (int $w.minReplicas) 2) (ge (int (include "sentiray-serve.pdbMinAvailable" .)) (int $w.minReplicas)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%s) must be below worker.minReplicas (%d), or no worker can ever be evicted (node drains stall)" (include "sentiray-serve.pdbMinAvailable" .) (int $w.minReplicas)) }}
{{- end }}
{{- $mv := .Values.modelVolume }}
{{- if $mv.claimName }}
{{- $pods := int $w.maxReplicas }}
{{- if ne .Values.upgradeStrategy "None" }}{{ $pods = mul $pods 2 }}{{ end }}
{{- if and (eq $mv.accessMode "ReadWriteOncePod") (gt $pods 1) }}
{{- fail (printf "modelVolume.accessMode ReadWriteOncePod admits one pod, but up to %d worker pods mount the claim (worker.maxReplicas, x2 during a NewCluster upgrade): use a ReadWriteMany or ReadOnlyMany claim, or an s3:// model.uri" $pods) }}
{{- end }}
{{- if and (eq $mv.accessMode "ReadWriteOnce") (gt $pods 1) }}
{{- fail (printf "modelVolume.accessMode ReadWriteOnce attaches to one node, but up to %d worker pods mount the claim (worker.maxReplicas, x2 during a NewCluster upgrade) and would fail with Multi-Attach on a second node: use a ReadWriteMany or ReadOnlyMany claim or an s3:// model.uri, or set worker.maxReplicas=1 and upgradeStrategy=None" $pods) }}
{{- end }}
{{- if and (hasPrefix "/" .Values.model.uri) (not (hasPrefix (printf "%s/" (trimSuffix "/" $mv.mountPath)) .Values.model.uri)) }}
{{- fail (printf "model.uri %s is a path outside modelVolume.mountPath %s: the replicas would not find it" .Values.model.uri $mv.mountPath) }}
{{- end }}
{{- end }}
{{- range $name, $g := dict "head" .Values.head "worker" .Values.worker }}
{{- if lt (float64 (include "sentiray-serve.bytes" $g.shmSize)) 104857600.0 }}
{{- fail (printf "%s.shmSize (%s) must be at least 100Mi: Ray's object store (80%% of it) needs 75 MiB" $name $g.shmSize) }}
{{- end }}
{{- if ge (float64 (include "sentiray-serve.bytes" $g.shmSize)) (float64 (include "sentiray-serve.bytes" $g.resources.limits.memory)) }}
{{- fail (printf "%s.shmSize (%s) must be below the memory limit (%s): /dev/shm is memory charged to the pod" $name $g.shmSize $g.resources.limits.memory) }}
{{- end }}
{{- end }}
{{- end }}

{{/* minAvailable of the workers' PodDisruptionBudget: the value, else one below worker.minReplicas. */}}
{{- define "sentiray-serve.pdbMinAvailable" -}}
{{- if kindIs "invalid" .Values.podDisruptionBudget.minAvailable }}
{{- sub (int .Values.worker.minReplicas) 1 }}
{{- else }}
{{- int .Values.podDisruptionBudget.minAvailable }}
{{- end }}
{{- end }}

{{/* The application's builder args of files/serve-config.yaml (first application). */}}
{{- define "sentiray-serve.appArgs" -}}
{{- $cfg := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- toYaml ((first $cfg.applications).args | default dict) }}
{{- end }}

{{/*
serveConfigV2: files/serve-config.yaml (a copy of serve/config.yaml, kept equal by
`make sync-serve-config` and a test) with only these changes: the builder args that locate
the model and the API token, each deployment's ray_actor_options from values, the proxy bound to all
interfaces so the Kubernetes Service reaches it, and the Serve settings under `serve:` that are set.
A change here is applied in place by Serve (no new cluster).
*/}}
{{- define "sentiray-serve.serveConfig" -}}
{{- $cfg := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- if not $cfg.applications }}
{{- fail "files/serve-config.yaml holds no applications: run `make sync-serve-config`" }}
{{- end }}
{{- $s := .Values.serve }}
{{- $http := $cfg.http_options | default dict }}
{{- $_ := set $http "host" "0.0.0.0" }}
{{- if not (kindIs "invalid" $s.requestTimeoutS) }}{{ $_ := set $http "request_timeout_s" $s.requestTimeoutS }}{{ end }}
{{- $_ := set $cfg "http_options" $http }}
{{- range $app := $cfg.applications }}
{{- $args := $app.args | default dict }}
{{- $_ := set $args "model" $.Values.model.uri }}
{{- if $.Values.apiAuth.enabled }}
{{- $_ := set $args "api_token_file" (include "sentiray-serve.apiTokenPath" $) }}
{{- end }}
{{- if not (kindIs "invalid" $s.maxBatchSize) }}{{ $_ := set $args "max_batch_size" $s.maxBatchSize }}{{ end }}
{{- if not (kindIs "invalid" $s.batchWaitTimeoutS) }}{{ $_ := set $args "batch_wait_timeout_s" $s.batchWaitTimeoutS }}{{ end }}
{{- $_ := set $app "args" $args }}
{{- range $deployment := $app.deployments }}
{{- with index $.Values.rayActorOptions $deployment.name }}
{{- $_ := set $deployment "ray_actor_options" . }}
{{- end }}
{{- if eq $deployment.name $s.modelDeployment }}
{{- $scaling := $deployment.autoscaling_config | default dict }}
{{- if not (kindIs "invalid" $s.minReplicas) }}{{ $_ := set $scaling "min_replicas" $s.minReplicas }}{{ end }}
{{- if not (kindIs "invalid" $s.maxReplicas) }}
{{- $_ := set $scaling "max_replicas" $s.maxReplicas }}
{{- else if not $.Values.autoscaling.enabled }}
{{- /* No autoscaler: no pod is ever added, so Serve may only scale within the fixed workers. */}}
{{- $cap := int (include "sentiray-serve.fixedCapacity" $) }}
{{- if lt $cap (int $scaling.max_replicas) }}{{ $_ := set $scaling "max_replicas" $cap }}{{ end }}
{{- end }}
{{- if not (kindIs "invalid" $s.targetOngoingRequests) }}{{ $_ := set $scaling "target_ongoing_requests" $s.targetOngoingRequests }}{{ end }}
{{- if $scaling }}{{ $_ := set $deployment "autoscaling_config" $scaling }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Changes KubeRay applies to no running cluster: worker replicas, min/max and tolerations are left out of
the cluster hash it compares (utils.GenerateHashWithoutReplicasAndWorkersToDelete), so on their own
they would change nothing. Their digest in the pod template makes such a change start a new cluster
(NewCluster: zero downtime) instead of doing nothing silently.
*/}}
{{- define "sentiray-serve.rolloutDigest" -}}
{{- $tol := include "sentiray-serve.tolerations" (dict "root" . "group" .Values.worker "isHead" false) }}
{{- dict "min" .Values.worker.minReplicas "max" .Values.worker.maxReplicas "workerTolerations" $tol "headTolerations" .Values.head.tolerations | toJson | sha256sum | trunc 16 }}
{{- end }}

{{/* Tolerations of a group: its own, and the GPU taint's for GPU workers only. */}}
{{- define "sentiray-serve.tolerations" -}}
{{- $tol := list }}
{{- if and (not .isHead) .group.gpu.enabled }}
{{- $tol = append $tol (dict "key" .group.gpu.resourceName "operator" "Exists" "effect" "NoSchedule") }}
{{- end }}
{{- range .group.tolerations }}{{ $tol = append $tol . }}{{ end }}
{{- if $tol }}{{ toYaml $tol }}{{ end }}
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
    {{- include "sentiray-serve.rayPodLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  annotations:
    sentiray.io/rollout: {{ include "sentiray-serve.rolloutDigest" $root | quote }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with $root.Values.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
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
  {{- with include "sentiray-serve.tolerations" (dict "root" $root "group" $g "isHead" $isHead) }}
  tolerations:
    {{- . | nindent 4 }}
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
        # Ray's autoscaler and dashboard export their own metrics on the head (Ray's
        # AUTOSCALER_METRIC_PORT and DASHBOARD_METRIC_PORT).
        - {name: as-metrics, containerPort: 44217}
        - {name: dash-metrics, containerPort: 44227}
        {{- end }}
        - {name: serve, containerPort: 8000}
        - {name: metrics, containerPort: {{ $root.Values.metricsPort }}}
      env:
        - {name: HF_HOME, value: /home/ray/.cache/huggingface}
        - {name: HF_HUB_DISABLE_TELEMETRY, value: "1"}
        {{- /* Serve's proxies (and direct-ingress replicas) call this at start: a deadline on request
        headers, so a client trickling them cannot hold a connection (serve/slow_clients.py). */}}
        - {name: RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, value: "serve.slow_clients:install"}
        - {name: SENTIRAY_HEADER_TIMEOUT_S, value: {{ $root.Values.serve.headerTimeoutS | quote }}}
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
        {{- /* The head runs no replica, so only workers read the model. */}}
        {{- if and (not $isHead) $root.Values.modelVolume.claimName }}
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
    {{- if and (not $isHead) $root.Values.modelVolume.claimName }}
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
