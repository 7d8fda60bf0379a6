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
{{- printf "%s:%d,db=%d" .Values.redis.host (int .Values.redis.port) (int .Values.redis.db) -}}
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
recstack.env: the environment every RecStack container gets on top of the ConfigMap.

The Redis password stays in its Secret: it is read into REDIS_PASSWORD and composed
into RECSTACK_REDIS with Kubernetes' own `$(VAR)` expansion, which resolves a
variable defined earlier in the same list. That needs no shell wrapper and no init
container, so the container keeps an exec-form command; `env` entries override the
ConfigMap's password-less RECSTACK_REDIS. Feast's format splits on commas, so the
password must not contain one.
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
{{- end -}}
