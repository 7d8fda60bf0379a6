{{/*
recstack.rayPod: the pod template of a Ray head or worker: the RecStack image (the same
Ray and Python everywhere), the data volume, emptyDirs for /tmp (Ray's session
directory) and /dev/shm (the object store). Call with (dict "ctx" $ "container" NAME
"resources" RES "ports" PORTS).
*/}}
{{- define "recstack.rayPod" -}}
{{- $ := .ctx -}}
{{- $t := $.Values.training -}}
metadata:
  labels:
    {{- include "recstack.componentLabels" (dict "ctx" $ "component" "ray") | nindent 4 }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- include "recstack.podSettings" $ | nindent 2 }}
  containers:
    - name: {{ .container }}
      {{- include "recstack.container" $ | nindent 6 }}
      {{- with .ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      envFrom:
        - configMapRef:
            name: {{ include "recstack.fullname" $ }}
      env:
        {{- include "recstack.env" $ | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      volumeMounts:
        {{- include "recstack.dataMount" $ | nindent 8 }}
        - name: tmp
          mountPath: /tmp
        - name: dshm
          mountPath: /dev/shm
  volumes:
    {{- include "recstack.dataVolume" $ | nindent 4 }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ $t.tmpSizeLimit | quote }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $t.shmSizeLimit | quote }}
{{- end -}}

{{/*
recstack.rayJobSpec: the spec of the training RayJob (KubeRay ray.io/v1), shared by
the template in ConfigMap <fullname>-rayjob and the RayJob created at install.
*/}}
{{- define "recstack.rayJobSpec" -}}
{{- $t := .Values.training -}}
{{- $args := list "recstack" "train" "--data" .Values.materialize.dataPath "--registry" .Values.registry.uri "--workers" (toString $t.workers) "--shards" (toString $t.shards) "--promote" $t.promote -}}
{{- $args = concat $args $t.extraArgs -}}
# The driver runs on the head and joins the cluster through RAY_ADDRESS (set by Ray's
# job runtime), so Ray Train's workers are the cluster's worker pods.
entrypoint: {{ join " " $args | quote }}
shutdownAfterJobFinishes: {{ $t.shutdownAfterJobFinishes }}
ttlSecondsAfterFinished: {{ $t.ttlSecondsAfterFinished }}
activeDeadlineSeconds: {{ $t.activeDeadlineSeconds }}
backoffLimit: {{ $t.backoffLimit }}
submissionMode: K8sJobMode
# KubeRay fills in the submitter's command (`ray job submit ...`); the pod is hardened
# like every other.
submitterPodTemplate:
  metadata:
    labels:
      {{- include "recstack.componentLabels" (dict "ctx" . "component" "ray") | nindent 6 }}
  spec:
    restartPolicy: Never
    {{- include "recstack.podSettings" . | nindent 4 }}
    containers:
      - name: ray-job-submitter
        {{- include "recstack.container" . | nindent 8 }}
        env:
          - name: HOME
            value: /tmp
        resources:
          {{- toYaml $t.submitter.resources | nindent 10 }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        emptyDir:
          sizeLimit: 256Mi
rayClusterSpec:
  rayVersion: {{ $t.rayVersion | quote }}
  authOptions:
    mode: {{ $t.rayAuth }}
  headGroupSpec:
    rayStartParams:
      num-cpus: {{ $t.head.numCpus | quote }}
      dashboard-host: 0.0.0.0
    template:
      {{- include "recstack.rayPod" (dict "ctx" . "container" "ray-head" "resources" $t.head.resources "ports" (list (dict "name" "gcs-server" "containerPort" 6379) (dict "name" "dashboard" "containerPort" 8265) (dict "name" "client" "containerPort" 10001))) | nindent 6 }}
  workerGroupSpecs:
    - groupName: workers
      replicas: {{ $t.worker.replicas }}
      minReplicas: {{ $t.worker.replicas }}
      maxReplicas: {{ $t.worker.replicas }}
      rayStartParams:
        num-cpus: {{ $t.worker.numCpus | quote }}
      template:
        {{- include "recstack.rayPod" (dict "ctx" . "container" "ray-worker" "resources" $t.worker.resources "ports" list) | nindent 8 }}
{{- end -}}
