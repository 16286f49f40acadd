{{/*
Names. The RayJob name is kept to 40 characters: KubeRay derives the RayCluster
(<name>-<suffix>), the submitter Job, their Services and label values from it.
*/}}
{{- define "sentiray-train.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sentiray-train.fullname" -}}
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

{{- define "sentiray-train.rayJobName" -}}
{{- include "sentiray-train.fullname" . | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "sentiray-train.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sentiray-train.labels" -}}
helm.sh/chart: {{ include "sentiray-train.chart" . }}
{{ include "sentiray-train.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sentiray
{{- end }}

{{- define "sentiray-train.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentiray-train.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the Ray pod templates. Not the chart's: app.kubernetes.io/name would override KubeRay's own
`app.kubernetes.io/name: kuberay`, on which the head Service KubeRay builds selects (KubeRay issues 2648,
2564), and helm.sh/chart or the version have no business in a pod template. Our selectors use these.
*/}}
{{- define "sentiray-train.raySelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
sentiray.io/app: {{ include "sentiray-train.name" . }}
{{- end }}

{{- define "sentiray-train.rayPodLabels" -}}
{{ include "sentiray-train.raySelectorLabels" . }}
app.kubernetes.io/part-of: sentiray
{{- end }}

{{/* A Kubernetes quantity ("4Gi", "512M") in bytes, as an integer string. */}}
{{- define "sentiray-train.bytes" -}}
{{- $q := toString . }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $mult := dict "" 1.0 "k" 1000.0 "K" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 }}
{{- printf "%.0f" (mulf (float64 $num) (get $mult (trimPrefix $num $q))) }}
{{- end }}

{{/*
object-store-memory of a group: 80% of its /dev/shm. Ray 2.60 sizes the object store at 30% of the
memory and puts it on disk when /dev/shm is smaller (ray/_private/services.py,
determine_plasma_store_config); the 20% left is for NCCL and the data loaders, which use /dev/shm too.
*/}}
{{- define "sentiray-train.objectStoreBytes" -}}
{{- printf "%.0f" (mulf (float64 (include "sentiray-train.bytes" .)) 0.8) }}
{{- end }}

{{/* CPU cores of a quantity ("4", "3500m", 2). */}}
{{- define "sentiray-train.cores" -}}
{{- $q := toString . }}
{{- if hasSuffix "m" $q }}{{ divf (float64 (trimSuffix "m" $q)) 1000.0 }}{{ else }}{{ float64 $q }}{{ end }}
{{- end }}

{{- define "sentiray-train.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Checkpoint storage as `--storage-path` sees it. */}}
{{- define "sentiray-train.storagePath" -}}
{{- if eq .Values.storage.type "pvc" }}
{{- printf "%s/runs" (.Values.storage.pvc.mountPath | trimSuffix "/") }}
{{- else }}
{{- .Values.storage.objectStore.uri }}
{{- end }}
{{- end }}

{{/*
Cross-field rules the JSON schema cannot express. Each message names the key to change.
*/}}
{{- define "sentiray-train.validate" -}}
{{- $s := .Values.storage }}
{{- if and (eq $s.type "pvc") (gt (int .Values.workers.replicas) 1) (not (has "ReadWriteMany" $s.pvc.accessModes)) }}
{{- fail (printf "storage.pvc.accessModes %v cannot be shared by workers.replicas=%d workers on different nodes: use ReadWriteMany (an RWX storage class), storage.type=objectStore, or one worker" $s.pvc.accessModes (int .Values.workers.replicas)) }}
{{- end }}
{{- if and (eq $s.type "pvc") (has "ReadWriteOncePod" $s.pvc.accessModes) }}
{{- fail "storage.pvc.accessModes ReadWriteOncePod admits one pod, but the head (driver, run state) and the workers all write the runs: use ReadWriteMany, ReadWriteOnce with one worker, or storage.type=objectStore" }}
{{- end }}
{{- if and (eq $s.type "pvc") (not (or (has "ReadWriteMany" $s.pvc.accessModes) (has "ReadWriteOnce" $s.pvc.accessModes))) }}
{{- fail (printf "storage.pvc.accessModes %v cannot be written by the job: use ReadWriteMany, or ReadWriteOnce with one worker" $s.pvc.accessModes) }}
{{- end }}
{{- $podcpu := ceil (float64 (include "sentiray-train.cores" (default .Values.workers.resources.requests.cpu .Values.workers.resources.limits.cpu))) }}
{{- if gt (float64 .Values.workers.cpusPerWorker) $podcpu }}
{{- fail (printf "workers.cpusPerWorker (%v) is above the %v CPUs Ray sees in a worker pod (workers.resources): the training workers would never be scheduled" .Values.workers.cpusPerWorker $podcpu) }}
{{- end }}
{{- range $name, $g := dict "head" .Values.head "workers" .Values.workers }}
{{- if lt (float64 (include "sentiray-train.bytes" $g.shmSize)) 104857600.0 }}
{{- fail (printf "%s.shmSize (%s) must be at least 100Mi: Ray's object store (80%% of it) needs 75 MiB" $name $g.shmSize) }}
{{- end }}
{{- if ge (float64 (include "sentiray-train.bytes" $g.shmSize)) (float64 (include "sentiray-train.bytes" $g.resources.limits.memory)) }}
{{- fail (printf "%s.shmSize (%s) must be below the memory limit (%s): /dev/shm is memory charged to the pod" $name $g.shmSize $g.resources.limits.memory) }}
{{- end }}
{{- end }}
{{- if and (eq $s.type "objectStore") (not $s.objectStore.uri) }}
{{- fail "storage.objectStore.uri is required when storage.type is objectStore (e.g. s3://bucket/sentiray/runs)" }}
{{- end }}
{{- if and .Values.job.ttlSecondsAfterFinished (not .Values.job.shutdownAfterJobFinishes) }}
{{- fail "job.ttlSecondsAfterFinished only applies with job.shutdownAfterJobFinishes=true; set it to 0 or turn shutdown on" }}
{{- end }}
{{- end }}

{{/* The entrypoint: flags of `python -m ray_jobs.train` (generated from sentiray/config.py). */}}
{{- define "sentiray-train.entrypoint" -}}
{{- $j := .Values.job }}
{{- $args := list "python" "-m" "ray_jobs.train" "--preset" $j.preset "--name" $j.runName }}
{{- if $j.resumeIfExists }}{{ $args = append $args "--resume-if-exists" }}{{ end }}
{{- $args = concat $args (list "--num-workers" (toString .Values.workers.replicas)) }}
{{- $args = append $args (ternary "--use-gpu" "--no-use-gpu" .Values.workers.gpu.enabled) }}
{{- $args = concat $args (list "--cpus-per-worker" (toString .Values.workers.cpusPerWorker)) }}
{{- $args = concat $args (list "--storage-path" (include "sentiray-train.storagePath" .)) }}
{{- $args = concat $args (list "--max-failures" (toString $j.maxFailures)) }}
{{- range $key, $value := $j.config }}
{{- if kindIs "bool" $value }}
{{- $args = append $args (printf "--%s%s" (ternary "" "no-" $value) (kebabcase $key)) }}
{{- else if not (kindIs "invalid" $value) }}
{{- $args = concat $args (list (printf "--%s" (kebabcase $key)) (toString $value)) }}
{{- end }}
{{- end }}
{{- $args = concat $args $j.extraArgs }}
{{- $quoted := list }}
{{- range $args }}
{{- if regexMatch "^[A-Za-z0-9_./:=@+,-]+$" . }}{{ $quoted = append $quoted . }}{{ else }}{{ $quoted = append $quoted (squote .) }}{{ end }}
{{- end }}
{{- join " " $quoted }}
{{- end }}

{{/*
A Ray pod template: hardened, with writable emptyDirs where Ray (/tmp), the object store
(/dev/shm, memory-backed) and the Hugging Face cache write, and the shared run storage.
Called with (dict "root" $ "group" <head or workers values> "component" "ray-head"|"ray-worker").
*/}}
{{- define "sentiray-train.rayPodTemplate" -}}
{{- $root := .root }}
{{- $g := .group }}
{{- $isHead := eq .component "ray-head" }}
{{- $s := $root.Values.storage }}
metadata:
  labels:
    {{- include "sentiray-train.rayPodLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- with $root.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  automountServiceAccountToken: false
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
  {{- $rwo := and (eq $s.type "pvc") (not (has "ReadWriteMany" $s.pvc.accessModes)) }}
  {{- $tol := list }}
  {{- /* GPU workers tolerate the GPU taint; with a ReadWriteOnce claim so does the head, which follows
  the worker onto its node (below). */}}
  {{- if and $root.Values.workers.gpu.enabled (or (not $isHead) $rwo) }}
  {{- $tol = append $tol (dict "key" $root.Values.workers.gpu.resourceName "operator" "Exists" "effect" "NoSchedule") }}
  {{- end }}
  {{- with concat $tol ($g.tolerations | default list) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $affinity := deepCopy ($g.affinity | default dict) }}
  {{- if and $isHead $rwo }}
  {{- /* A ReadWriteOnce claim attaches to one node, and head and worker both mount it (the validation
  allows one worker only): the head follows the worker onto its node, or it fails with Multi-Attach.
  This way round the worker, with its GPU, is placed freely; KubeRay creates the workers without waiting
  for the head (raycluster_controller.go reconcilePods). */}}
  {{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (merge (include "sentiray-train.raySelectorLabels" $root | fromYaml) (dict "app.kubernetes.io/component" "ray-worker"))) }}
  {{- $_ := set $affinity "podAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
  {{- end }}
  {{- with $affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "sentiray-train.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      ports:
        {{- if $isHead }}
        - {name: gcs-server, containerPort: 6379}
        - {name: dashboard, containerPort: 8265}
        - {name: client, containerPort: 10001}
        # The dashboard's own metrics (Ray's DASHBOARD_METRIC_PORT).
        - {name: dash-metrics, containerPort: 44227}
        {{- end }}
        - {name: metrics, containerPort: {{ $root.Values.metricsPort }}}
      env:
        - {name: HF_HOME, value: /home/ray/.cache/huggingface}
        - {name: HF_HUB_DISABLE_TELEMETRY, value: "1"}
        - {name: TOKENIZERS_PARALLELISM, value: "false"}
        {{- if $root.Values.hubToken.existingSecret }}
        - {name: HF_TOKEN_PATH, value: /var/run/secrets/sentiray/hub-token/{{ $root.Values.hubToken.secretKey }}}
        {{- end }}
        {{- if eq $s.type "objectStore" }}
        {{- if $s.objectStore.credentialsSecret }}
        - {name: AWS_SHARED_CREDENTIALS_FILE, value: /var/run/secrets/sentiray/object-store/{{ $s.objectStore.secretKey }}}
        {{- end }}
        {{- with $s.objectStore.endpoint }}
        - {name: AWS_ENDPOINT_URL, value: {{ . | quote }}}
        {{- end }}
        {{- with $s.objectStore.region }}
        - {name: AWS_REGION, value: {{ . | quote }}}
        {{- end }}
        {{- end }}
        {{- with $root.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- $res := deepCopy $g.resources }}
        {{- if and (not $isHead) $g.gpu.enabled }}
        {{- $limits := $res.limits | default dict }}
        {{- $_ := set $limits $g.gpu.resourceName 1 }}
        {{- $_ := set $res "limits" $limits }}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      volumeMounts:
        - {name: tmp, mountPath: /tmp}
        - {name: shm, mountPath: /dev/shm}
        - {name: cache, mountPath: /home/ray/.cache}
        {{- if eq $s.type "pvc" }}
        - {name: runs, mountPath: {{ $s.pvc.mountPath }}}
        {{- end }}
        {{- if $root.Values.hubToken.existingSecret }}
        - {name: hub-token, mountPath: /var/run/secrets/sentiray/hub-token, readOnly: true}
        {{- end }}
        {{- if and (eq $s.type "objectStore") $s.objectStore.credentialsSecret }}
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
    {{- if eq $s.type "pvc" }}
    - name: runs
      persistentVolumeClaim:
        claimName: {{ $s.pvc.name }}
    {{- end }}
    {{- if $root.Values.hubToken.existingSecret }}
    - name: hub-token
      secret:
        secretName: {{ $root.Values.hubToken.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if and (eq $s.type "objectStore") $s.objectStore.credentialsSecret }}
    - name: object-store
      secret:
        secretName: {{ $s.objectStore.credentialsSecret }}
        defaultMode: 0440
    {{- end }}
{{- end }}
