// Log Analytics workspace and the workspace-based Application Insights component that receive the
// function app's logs, requests and traces. Local (key-based) authentication is off on both: the app
// sends telemetry with its managed identity (Monitoring Metrics Publisher, see rbac.bicep).

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output logAnalyticsName string = workspace.name
output applicationInsightsName string = appInsights.name
