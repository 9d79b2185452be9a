{{/* Names: the chart name, and <release>-celeriac unless the release name already says celeriac. */}}
{{- define "celeriac.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "celeriac.fullname" -}}
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

{{- define "celeriac.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */}}
{{- define "celeriac.labels" -}}
helm.sh/chart: {{ include "celeriac.chart" . }}
{{ include "celeriac.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: celeriac
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "celeriac.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celeriac.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "celeriac.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "celeriac.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "celeriac.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
Cross-field checks the JSON schema cannot phrase well; each message names the value to fix.
Included once, from the Deployment.
*/}}
{{- define "celeriac.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.name) -}}
{{- fail (printf "peering.name: replicaCount is %d, so set peering.name (e.g. celeriac): without kopf peering every replica would handle every pool" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable: %d would block every node drain with replicaCount %d; use at most %d" (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount) (sub (int .Values.replicaCount) 1)) -}}
{{- end -}}
{{- if eq (int .Values.ports.metrics) (int .Values.ports.health) -}}
{{- fail (printf "ports.health: %d is also ports.metrics; the two endpoints need their own ports" (int .Values.ports.health)) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled -}}
{{- fail "serviceMonitor.enabled and podMonitor.enabled: enable one of the two, or Prometheus scrapes every series twice" -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does to pools, their Deployments and pods: one rule list for the ClusterRole
(cluster-wide mode) and for each namespace's Role (namespaced mode). README.md explains each rule.
*/}}
{{- define "celeriac.poolRules" -}}
# Only the verbs the operator's code and kopf use (issue #14, 5); the chart README says why.
- apiGroups: ["celeriac.dev"]
  resources: ["celeryworkerpools"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["celeriac.dev"]
  resources: ["celeryworkerpools/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# Pools with spec.scaleTargetRef: read the user's workload, write only its /scale.
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets", "statefulsets/scale"]
  verbs: ["get", "patch"]
{{- range .Values.rbac.scaleTargets }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource | quote }}, {{ printf "%s/scale" .resource | quote }}]
  verbs: ["get", "patch"]
{{- end }}
- apiGroups: [""]
  resources: ["secrets"]
  {{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.podMetrics }}
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}
{{- end -}}

{{/* The operator's ServiceAccount as the apiserver names it in request.userInfo. */}}
{{- define "celeriac.serviceAccountUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "celeriac.serviceAccountName" . }}
{{- end -}}
