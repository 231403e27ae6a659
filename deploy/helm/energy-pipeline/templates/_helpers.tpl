{{/* The chart's name, or nameOverride. */}}
{{- define "energy-pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: fullnameOverride, else <release>-<chart> (just <release> when
it already contains the chart's name). Truncated to 63 characters (DNS label).
*/}}
{{- define "energy-pipeline.fullname" -}}
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

{{/* <fullname>-<component>, truncated to 63 characters. Call with (list . "producer"). */}}
{{- define "energy-pipeline.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "energy-pipeline.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "energy-pipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. Call with (list . "producer"); the component may be "". */}}
{{- define "energy-pipeline.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "energy-pipeline.chart" $root }}
{{ include "energy-pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: energy-pipeline
{{- end }}

{{/* Labels that select a component's pods: stable across upgrades (no version, no chart). */}}
{{- define "energy-pipeline.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "energy-pipeline.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- with index . 1 }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "energy-pipeline.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "energy-pipeline.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference. Call with (list . .Values.producer.image). */}}
{{- define "energy-pipeline.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $tag := default $root.Chart.AppVersion $image.tag }}
{{- if $root.Values.imageRegistry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.imageRegistry) $image.repository $tag }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Kafka bootstrap servers: kafkaBootstrapServers, else the chart's Strimzi cluster. */}}
{{- define "energy-pipeline.kafkaBootstrapServers" -}}
{{- if .Values.kafkaBootstrapServers }}
{{- .Values.kafkaBootstrapServers }}
{{- else if .Values.kafka.enabled }}
{{- printf "%s-kafka-bootstrap:9092" .Values.kafka.name }}
{{- else }}
{{- fail "kafkaBootstrapServers is required when kafka.enabled is false" }}
{{- end }}
{{- end }}

{{/* The ksqlDB URL the pipeline's operator uses: the chart's ksqlDB Service. */}}
{{- define "energy-pipeline.ksqldbUrl" -}}
{{- printf "http://%s:%d" (include "energy-pipeline.componentName" (list . "ksqldb")) (int .Values.ksqldb.service.port) }}
{{- end }}

{{/* The name of the settings ConfigMap the operator publishes for the pipeline. */}}
{{- define "energy-pipeline.settingsConfigMap" -}}
{{- printf "%s-settings" .Values.pipeline.name }}
{{- end }}

{{/* imagePullSecrets of a pod spec. */}}
{{- define "energy-pipeline.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scheduling keys of a pod spec. Call with a component's values (nodeSelector,
tolerations, affinity).
*/}}
{{- define "energy-pipeline.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Extra environment variables of a container from a name -> value map. */}}
{{- define "energy-pipeline.env" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The components that export Prometheus metrics and are enabled, as a list of
dicts {name, port}.
*/}}
{{- define "energy-pipeline.metricsComponents" -}}
{{- $components := list }}
{{- if .Values.operator.enabled }}
{{- $components = append $components (dict "name" "operator" "port" .Values.operator.metricsPort) }}
{{- end }}
{{- if .Values.producer.enabled }}
{{- $components = append $components (dict "name" "producer" "port" .Values.producer.metricsPort) }}
{{- end }}
{{- if .Values.transformer.enabled }}
{{- $components = append $components (dict "name" "transformer" "port" .Values.transformer.metricsPort) }}
{{- end }}
{{- toJson $components }}
{{- end }}

{{/* A ServiceMonitor for one component. Call with (list . "producer"). */}}
{{- define "energy-pipeline.serviceMonitor" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "energy-pipeline.componentName" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "energy-pipeline.labels" (list $root $component) | nindent 4 }}
    {{- with $root.Values.monitoring.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "energy-pipeline.selectorLabels" (list $root $component) | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ $root.Release.Namespace }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $root.Values.monitoring.serviceMonitor.interval }}
      {{- include "energy-pipeline.pipelineRelabeling" . | nindent 6 }}
{{- end }}

{{/*
The dashboards' `pipeline` variable: the pod's pipeline label, as a series label.
*/}}
{{- define "energy-pipeline.pipelineRelabeling" -}}
relabelings:
  - sourceLabels: [__meta_kubernetes_pod_label_energy_pipeline_github_io_pipeline]
    targetLabel: pipeline
{{- end }}
