{{/*
recstack.name: the chart name, or nameOverride.
*/}}
{{- define "recstack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
recstack.fullname: `<release>-<name>`, or just the release when it already contains
the name; names are DNS labels, hence the 63-character cut.
*/}}
{{- define "recstack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
recstack.chart: `<chart>-<version>` for the helm.sh/chart label.
*/}}
{{- define "recstack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
recstack.selectorLabels: the labels that identify this release's objects.
*/}}
{{- define "recstack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recstack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
recstack.labels: the standard app.kubernetes.io/* labels for every object.
*/}}
{{- define "recstack.labels" -}}
helm.sh/chart: {{ include "recstack.chart" . }}
{{ include "recstack.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recstack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
recstack.serviceAccountName: the ServiceAccount the pods run as.
*/}}
{{- define "recstack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recstack.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
recstack.image: repository@digest when a digest is set, else repository:tag.
*/}}
{{- define "recstack.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
recstack.redisAddress: RECSTACK_REDIS without the password, in Feast's format
`host:port,db=N[,ssl=true]`.
*/}}
{{- define "recstack.redisAddress" -}}
{{- printf "%s:%d,db=%d" (include "recstack.redisHost" .) (int .Values.redis.port) (int .Values.redis.db) -}}
{{- if .Values.redis.ssl }},ssl=true{{ end -}}
{{- end -}}

{{/*
recstack.claimName: the PersistentVolumeClaim that holds the data directory.
*/}}
{{- define "recstack.claimName" -}}
{{- default (printf "%s-data" (include "recstack.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/*
recstack.materialize.name: the CronJob's name. CronJob names stop at 52 characters
because the controller appends an 11-character suffix to each Job.
*/}}
{{- define "recstack.materialize.name" -}}
{{- printf "%s-materialize" (include "recstack.fullname" . | trunc 40 | trimSuffix "-") -}}
{{- end -}}

{{/*
recstack.redisHost: the chart's own Redis Service when redis.deploy, else redis.host.
*/}}
{{- define "recstack.redisHost" -}}
{{- if .Values.redis.deploy -}}
{{- printf "%s-redis" (include "recstack.fullname" .) -}}
{{- else -}}
{{- required "redis.host is required when redis.deploy is false" .Values.redis.host -}}
{{- end -}}
{{- end -}}

{{/*
recstack.componentLabels: the standard labels plus app.kubernetes.io/component.
Call with (dict "ctx" $ "component" "collector").
*/}}
{{- define "recstack.componentLabels" -}}
{{ include "recstack.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
recstack.componentSelector: what a Deployment or a NetworkPolicy selects one component by.
*/}}
{{- define "recstack.componentSelector" -}}
{{ include "recstack.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
recstack.podMetadata: a pod template's labels and annotations.
*/}}
{{- define "recstack.podMetadata" -}}
labels:
  {{- include "recstack.componentLabels" . | nindent 2 }}
  {{- with .ctx.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .ctx.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
recstack.podSettings: what every RecStack pod spec shares: the identity without an API
token, then recstack.podScheduling.
*/}}
{{- define "recstack.podSettings" -}}
serviceAccountName: {{ include "recstack.serviceAccountName" . }}
automountServiceAccountToken: false
{{ include "recstack.podScheduling" . | trim }}
{{- end -}}

{{/*
recstack.podScheduling: the pull secrets, the restricted pod security context and the
scheduling constraints (for pods that bring their own ServiceAccount lines).
*/}}
{{- define "recstack.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
recstack.container: the image, pull policy and security context of a RecStack container.
*/}}
{{- define "recstack.container" -}}
image: {{ include "recstack.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/*
recstack.registryOnVolume: "true" when registry.uri is a directory on the data volume.
*/}}
{{- define "recstack.registryOnVolume" -}}
{{- $mount := trimSuffix "/" .Values.persistence.mountPath -}}
{{- $uri := trimSuffix "/" .Values.registry.uri -}}
{{- if or (eq $uri $mount) (hasPrefix (printf "%s/" $mount) $uri) }}true{{ end -}}
{{- end -}}

{{/*
recstack.registryS3: "true" when the registry is in an S3 (or S3-compatible) bucket.
*/}}
{{- define "recstack.registryS3" -}}
{{- if hasPrefix "s3://" .Values.registry.uri }}true{{ end -}}
{{- end -}}

{{/*
recstack.storageUriBase: where KServe finds the registry: registry.storageUriBase, else
pvc://<claim>/<path under the mount> for a registry on the data volume, else the uri.
*/}}
{{- define "recstack.storageUriBase" -}}
{{- if .Values.registry.storageUriBase -}}
{{- trimSuffix "/" .Values.registry.storageUriBase -}}
{{- else if include "recstack.registryOnVolume" . -}}
{{- $mount := trimSuffix "/" .Values.persistence.mountPath -}}
{{- $rest := trimPrefix "/" (trimPrefix $mount (trimSuffix "/" .Values.registry.uri)) -}}
{{- printf "pvc://%s" (include "recstack.claimName" .) -}}{{ with $rest }}/{{ . }}{{ end -}}
{{- else if or (hasPrefix "s3://" .Values.registry.uri) (hasPrefix "gs://" .Values.registry.uri) -}}
{{- trimSuffix "/" .Values.registry.uri -}}
{{- else -}}
{{- fail (printf "registry.uri %q is neither under persistence.mountPath %q nor s3:// or gs://; set registry.storageUriBase" .Values.registry.uri .Values.persistence.mountPath) -}}
{{- end -}}
{{- end -}}

{{/*
recstack.storageUri: the storageUri of one version: (dict "ctx" $ "version" V "storageUri" U);
empty when both are empty (follow a stage).
*/}}
{{- define "recstack.storageUri" -}}
{{- if .storageUri -}}
{{- .storageUri -}}
{{- else if .version -}}
{{- printf "%s/versions/%s" (include "recstack.storageUriBase" .ctx) .version -}}
{{- end -}}
{{- end -}}

{{/*
recstack.storageServiceAccountName: the ServiceAccount KServe's storage initializer reads
S3 credentials from (rendered only for an s3:// registry).
*/}}
{{- define "recstack.storageServiceAccountName" -}}
{{- printf "%s-storage" (include "recstack.fullname" .) -}}
{{- end -}}

{{/*
recstack.dataVolume / recstack.dataMount: the shared data volume.
*/}}
{{- define "recstack.dataVolume" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "recstack.claimName" . }}
{{- end -}}
{{- define "recstack.dataMount" -}}
- name: data
  mountPath: {{ .Values.persistence.mountPath | quote }}
{{- end -}}

{{/*
recstack.env: the environment every RecStack container gets on top of the ConfigMap.

The Redis password stays in its Secret: it is read into REDIS_PASSWORD and composed
into RECSTACK_REDIS with Kubernetes' own `$(VAR)` expansion, which resolves a
variable defined earlier in the same list. That needs no shell wrapper and no init
container, so the container keeps an exec-form command; `env` entries override the
ConfigMap's password-less RECSTACK_REDIS. Feast's format splits on commas, so the
password must not contain one. S3 credentials come from their Secret as the AWS_*
variables s3fs (and boto) read.
*/}}
{{- define "recstack.env" -}}
# Python, Feast and DuckDB write caches under HOME; /tmp is the writable emptyDir.
- name: HOME
  value: /tmp
{{- if .Values.redis.auth.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.auth.existingSecret | quote }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey | quote }}
- name: RECSTACK_REDIS
  value: {{ printf "%s,password=$(REDIS_PASSWORD)" (include "recstack.redisAddress" .) | quote }}
{{- end }}
{{- if .Values.feast.registry.existingSecret }}
- name: RECSTACK_FEAST_REGISTRY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.feast.registry.existingSecret | quote }}
      key: {{ .Values.feast.registry.existingSecretKey | quote }}
{{- end }}
{{- if and (include "recstack.registryS3" .) .Values.registry.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.s3.existingSecret | quote }}
      key: {{ .Values.registry.s3.accessKeyIdKey | quote }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.s3.existingSecret | quote }}
      key: {{ .Values.registry.s3.secretAccessKeyKey | quote }}
{{- end }}
{{- end -}}
