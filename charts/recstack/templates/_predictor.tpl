{{/*
recstack.predictor: one predictor spec of the InferenceService (the stable one or a
Standard-mode canary). Call with (dict "ctx" $ "name" NAME "storageUri" URI).
An empty storageUri follows inferenceService.stage in process instead of serving one
version directory (each version carries the Feast registry snapshot it was trained with).
*/}}
{{- define "recstack.predictor" -}}
{{- $ := .ctx -}}
{{- $isvc := $.Values.inferenceService -}}
{{- $knative := eq $isvc.deploymentMode "Knative" -}}
{{- $follow := not .storageUri -}}
{{- /* Following a stage of a registry on the data volume: mount the volume. */ -}}
{{- $mountData := and $follow (include "recstack.registryOnVolume" $) -}}
{{- with .name }}
name: {{ . }}
{{- end }}
labels:
  {{- include "recstack.componentSelector" (dict "ctx" $ "component" "predictor") | nindent 2 }}
minReplicas: {{ $isvc.minReplicas }}
maxReplicas: {{ $isvc.maxReplicas }}
scaleMetric: {{ $isvc.scaleMetric }}
scaleTarget: {{ $isvc.scaleTarget }}
timeout: {{ $isvc.timeout }}
{{- if include "recstack.registryS3" $ }}
# KServe's storage initializer takes the S3 credentials from this account's Secret.
serviceAccountName: {{ include "recstack.storageServiceAccountName" $ }}
{{- else }}
serviceAccountName: {{ include "recstack.serviceAccountName" $ }}
{{- end }}
automountServiceAccountToken: false
{{ include "recstack.podScheduling" $ | trim }}
containers:
  - name: kserve-container
    {{- include "recstack.container" $ | nindent 4 }}
    # args only: the image's entrypoint (tini) stays PID 1, reaping Ray's children
    # and passing signals on.
    args:
      - recstack
      - serve
      {{- if $follow }}
      - --registry
      - {{ $.Values.registry.uri | quote }}
      - --stage
      - {{ $isvc.stage | quote }}
      {{- else }}
      - --model-dir
      - /mnt/models
      {{- end }}
      - --host
      - 0.0.0.0
      - --port
      - "8080"
      - --config
      - /etc/recstack/serve.yaml
      {{- range $isvc.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    # No ports: KServe then gives the predictor Service port 80 to the pod's 8080 (a
    # declared port would be published as itself by newer KServe releases).
    envFrom:
      - configMapRef:
          name: {{ include "recstack.fullname" $ }}
    env:
      # KServe's webhook accepts v1 or v2; the server answers both protocols.
      - name: PROTOCOL
        value: {{ $isvc.protocol | quote }}
      {{- if not $follow }}
      # KServe's storage initializer puts this version directory at /mnt/models.
      - name: STORAGE_URI
        value: {{ .storageUri | quote }}
      {{- end }}
      {{- with $isvc.apiKeys.existingSecret }}
      - name: RECSTACK_SERVE_API_KEYS_FILE
        value: {{ printf "/etc/recstack-keys/%s" $isvc.apiKeys.key | quote }}
      {{- end }}
      {{- include "recstack.env" $ | nindent 6 }}
    {{- if not $knative }}
    # Ray, torch and Feast start in about 40 s on 2 cores: the startup probe holds the
    # other two off until the graph is ready once.
    startupProbe:
      httpGet:
        path: /v2/health/ready
        port: 8080
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: {{ max 1 (div (int $isvc.startupSeconds) 10) }}
    {{- end }}
    readinessProbe:
      httpGet:
        path: /v2/health/ready
        port: 8080
      {{- if $knative }}
      initialDelaySeconds: 30
      {{- end }}
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 3
    livenessProbe:
      httpGet:
        path: /v2/health/live
        port: 8080
      {{- if $knative }}
      # Knative mode renders no startup probe: the first liveness check waits instead.
      initialDelaySeconds: {{ $isvc.startupSeconds }}
      {{- end }}
      periodSeconds: 20
      timeoutSeconds: 5
      failureThreshold: 3
    resources:
      {{- toYaml $isvc.resources | nindent 6 }}
    volumeMounts:
      - name: serve-config
        mountPath: /etc/recstack
        readOnly: true
      - name: tmp
        mountPath: /tmp
      - name: dshm
        mountPath: /dev/shm
      {{- if $isvc.apiKeys.existingSecret }}
      - name: api-keys
        mountPath: /etc/recstack-keys
        readOnly: true
      {{- end }}
      {{- if $mountData }}
      {{- include "recstack.dataMount" $ | nindent 6 }}
      {{- end }}
volumes:
  - name: serve-config
    configMap:
      name: {{ include "recstack.fullname" $ }}-serve
  - name: tmp
    emptyDir:
      sizeLimit: {{ $isvc.tmpSizeLimit | quote }}
  # Ray's object store lives in /dev/shm; the runtime's default is only 64 MiB.
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $isvc.shmSizeLimit | quote }}
  {{- with $isvc.apiKeys.existingSecret }}
  - name: api-keys
    secret:
      secretName: {{ . | quote }}
  {{- end }}
  {{- if $mountData }}
  {{- include "recstack.dataVolume" $ | nindent 2 }}
  {{- end }}
{{- end -}}
