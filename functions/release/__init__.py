"""The progressive release loop (canary and shadow releases): ``loop`` has the steps, ``handler`` the Lambda."""
