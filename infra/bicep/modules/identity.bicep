// User-assigned managed identity of the function app. One identity, created before the app, so that its
// role assignments (rbac.bicep) exist by the time the app first starts and reads storage and Key Vault.
// The app and the Functions host both use it: AzureWebJobsStorage__clientId, AZURE_CLIENT_ID,
// the Key Vault reference identity and the Application Insights authentication string.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
